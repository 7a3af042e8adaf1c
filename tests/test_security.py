"""Trial checkpoints are read with ``torch.load(weights_only=True)``.

A checkpoint sits in shared storage (``/results`` on a cluster); unpickling it with
``weights_only=False`` runs whatever code it names on the worker that resumes the trial. The
built-in loop's state loads with ``weights_only=True``; anything else is refused, on restore and
already when a trainable reports it. Ray Tune's ``report`` and ``get_checkpoint`` are replaced by
a stand-in that keeps each epoch's checkpoint folder, so no Ray runtime is needed.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ray import tune
from torch import nn

from autoft.tuning import trial
from autoft.tuning.trial import STATE_FILE, TuneReporter
from trainables import TrialContext, loop
from trainables.api import TrialFailed
from trainables.hparams import parse_hparams
from trainables.tasks import make_task


class FakeTune:
    """``tune.report`` / ``tune.get_checkpoint`` of one trial: keeps each reported checkpoint."""

    def __init__(self, root: Path, restore_from: Path | None = None) -> None:
        self.root, self.restore_from = root, restore_from
        self.reports: list[dict] = []
        self.checkpoints: list[Path] = []

    def get_checkpoint(self) -> tune.Checkpoint | None:
        return None if self.restore_from is None else tune.Checkpoint.from_directory(
            self.restore_from)

    def report(self, metrics: dict, checkpoint: tune.Checkpoint | None = None) -> None:
        self.reports.append(metrics)
        if checkpoint is not None:
            kept = self.root / f"checkpoint_{len(self.checkpoints)}"
            with checkpoint.as_directory() as folder:
                shutil.copytree(folder, kept)
            self.checkpoints.append(kept)


@pytest.fixture()
def fake_tune(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A function that installs a fresh :class:`FakeTune` (optionally restoring a checkpoint)."""

    def install(restore_from: Path | None = None) -> FakeTune:
        fake = FakeTune(Path(tempfile.mkdtemp(dir=tmp_path)), restore_from)
        monkeypatch.setattr(trial.tune, "report", fake.report)
        monkeypatch.setattr(trial.tune, "get_checkpoint", fake.get_checkpoint)
        return fake

    return install


def run_tiny_loop(tmp_path: Path) -> dict[str, torch.Tensor]:
    """Two epochs of the shared loop on a small MLP with BatchNorm; the final model state (a
    resumed run overwrites the model's initial weights with the checkpoint's)."""
    generator = torch.Generator().manual_seed(0)
    batches = [({"x": torch.randn(4, 3, generator=generator)}, torch.tensor([0, 1, 0, 1]))] * 3
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))

    def build(runtime: loop.Runtime) -> loop.Job:
        return loop.Job(model=model, train_batches=lambda epoch: batches, steps_per_epoch=3,
                        eval_batches=lambda: batches[:1],
                        forward=lambda model, inputs: model(inputs["x"]),
                        task=make_task("classification", ["a", "b"]))

    hp = parse_hparams({"num_epochs": 2, "batch_size": 4, "lr_schedule": "stlr"}, "text")
    loop.run(hp, TuneReporter(TrialContext(0, 0)), build, threads=1)
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_a_loop_checkpoint_restores_with_weights_only(fake_tune, tmp_path: Path) -> None:
    straight = fake_tune()
    final = run_tiny_loop(tmp_path)
    state_file = straight.checkpoints[0] / STATE_FILE
    assert torch.serialization.get_unsafe_globals_in_checkpoint(state_file) == []
    assert set(torch.load(state_file, weights_only=True)) == {
        "model", "optimizer", "scheduler", "scaler", "rng", "epoch", "metrics"}

    resumed = fake_tune(restore_from=straight.checkpoints[0])
    resumed_final = run_tiny_loop(tmp_path)
    assert [metrics["epoch"] for metrics in resumed.reports] == [1]
    for name, tensor in final.items():
        assert torch.equal(tensor, resumed_final[name]), name


class Opaque:
    """Any class of a user's: weights_only refuses to build it."""


class RunsCode:
    """A pickle that calls ``os.mkdir(path)`` when loaded without weights_only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


@pytest.mark.parametrize("payload", ["opaque", "runs_code"])
def test_restore_refuses_a_checkpoint_with_other_objects(fake_tune, tmp_path: Path,
                                                         payload: str) -> None:
    marker = tmp_path / "code_ran"
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    value = Opaque() if payload == "opaque" else RunsCode(marker)
    torch.save({"epoch": 0, "payload": value}, folder / STATE_FILE)
    fake_tune(restore_from=folder)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        TuneReporter(TrialContext(0, 0)).restore()
    assert not marker.exists()


def test_a_state_that_restore_would_refuse_fails_when_reported(fake_tune) -> None:
    """A user function's state: plain values pass, a numpy array fails the trial at once."""
    fake = fake_tune()
    reporter = TuneReporter(TrialContext(0, 0))
    reporter.report({"epoch": 0}, {"epoch": 0, "best": [0.5, 1.0], "weights": torch.ones(2)})
    with pytest.raises(TrialFailed, match=r"state holds .*numpy\.ndarray.*weights_only=True"):
        reporter.report({"epoch": 1}, {"epoch": 1, "scores": np.ones(2)})
    assert [metrics["epoch"] for metrics in fake.reports] == [0]
    assert torch.load(fake.checkpoints[0] / STATE_FILE, weights_only=True)["best"] == [0.5, 1.0]

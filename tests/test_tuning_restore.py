"""A resumed trial whose saved checkpoint Ray deleted restores from its newest one left."""

from __future__ import annotations

from pathlib import Path

from ray import tune
from ray.train._internal.session import _TrainingResult

from autoft.tuning.restore import present_checkpoint


def saved(trial_dir: Path, name: str) -> tune.Checkpoint:
    folder = trial_dir / name
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"state")
    return tune.Checkpoint.from_directory(folder)


def test_an_existing_checkpoint_is_restored_as_saved(tmp_path: Path) -> None:
    restoring = _TrainingResult(saved(tmp_path, "checkpoint_000000"), {"training_iteration": 1})
    saved(tmp_path, "checkpoint_000001")
    assert present_checkpoint(restoring) is restoring


def test_a_deleted_checkpoint_gives_way_to_the_newest_left(tmp_path: Path) -> None:
    gone = tune.Checkpoint.from_directory(tmp_path / "checkpoint_000001")
    for name in ("checkpoint_000002", "checkpoint_000003"):
        saved(tmp_path, name)
    (tmp_path / "checkpoint_000009.json").write_text("{}")  # a file, not a checkpoint
    present = present_checkpoint(_TrainingResult(gone, {"training_iteration": 2}))
    assert Path(present.checkpoint.path) == tmp_path / "checkpoint_000003"
    assert present.metrics == {"training_iteration": 2}


def test_no_checkpoint_left_starts_the_trial_again(tmp_path: Path) -> None:
    gone = tune.Checkpoint.from_directory(tmp_path / "checkpoint_000000")
    assert present_checkpoint(_TrainingResult(gone, {})) is None

"""The whole copy of Ray's staged state that a resume falls back on
(autoft.tuning.state_backup).

The SIGKILL test of test_search empties Ray's files after a real search and resumes from this
copy; these tests pin the copy's own guarantees on plain files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from autoft.tuning.state_backup import BACKUP, copy_state, restore_state_backup

STATE = "experiment_state-2026-12-07_10-00-00.json"
SEARCHER = "searcher-state-2026-12-07_10-00-00.pkl"
RESULTS = "trial_0000/result.json"


def _staged(folder: Path, epochs: int) -> Path:
    """A staging folder as Ray's: the state and a trial's results after ``epochs`` epochs."""
    (folder / "trial_0000").mkdir(parents=True, exist_ok=True)
    (folder / STATE).write_text(json.dumps({"epochs": epochs}))
    (folder / SEARCHER).write_bytes(pickle.dumps({"epochs": epochs}))
    (folder / RESULTS).write_text("".join(f'{{"epoch": {e}}}\n' for e in range(epochs)))
    return folder


def test_a_new_copy_replaces_the_old_set_whole(tmp_path: Path) -> None:
    backup = tmp_path / "experiment" / BACKUP
    copy_state(_staged(tmp_path / "staging", 1), backup)
    copy_state(_staged(tmp_path / "staging", 2), backup)
    assert json.loads((backup / STATE).read_text()) == {"epochs": 2}
    assert (backup / RESULTS).read_text().count("\n") == 2
    assert [p.name for p in backup.parent.iterdir()] == [BACKUP]  # no .tmp or .old left


def test_resume_puts_back_the_state_and_results_a_killed_copy_cut_short(tmp_path: Path) -> None:
    experiment = _staged(tmp_path / "experiment", 1)
    copy_state(_staged(tmp_path / "staging", 2), experiment / BACKUP)
    (experiment / STATE).write_bytes(b"")  # the copy of the second save, killed midway
    (experiment / SEARCHER).write_bytes(pickle.dumps({"epochs": 2})[:5])
    assert restore_state_backup(experiment) == [STATE, SEARCHER, RESULTS]
    assert json.loads((experiment / STATE).read_text()) == {"epochs": 2}
    assert (experiment / RESULTS).read_text().count("\n") == 2  # the rows the state names
    assert restore_state_backup(experiment) == []  # what is whole and equal is left alone


def test_a_kill_between_the_renames_leaves_the_old_set(tmp_path: Path) -> None:
    experiment = _staged(tmp_path / "experiment", 1)
    copy_state(_staged(tmp_path / "staging", 1), experiment / BACKUP)
    (experiment / BACKUP).rename(experiment / f"{BACKUP}.old")  # the new set never renamed in
    (experiment / STATE).write_bytes(b"")
    assert restore_state_backup(experiment) == [STATE]
    assert json.loads((experiment / STATE).read_text()) == {"epochs": 1}


def test_a_search_without_a_backup_is_left_alone(tmp_path: Path) -> None:
    experiment = _staged(tmp_path / "experiment", 1)
    assert restore_state_backup(experiment) == []
    copy_state(tmp_path / "empty", experiment / BACKUP)  # nothing staged yet: no backup
    assert not (experiment / BACKUP).exists()

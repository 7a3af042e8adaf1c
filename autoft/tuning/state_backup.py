"""A whole copy of Ray Tune's saved search state, for ``autoft resume`` after a hard kill.

Ray writes the experiment's state (the trials and which checkpoint each resumes from, the
searcher's study) and each trial's results into a staging folder on the driver, then copies that
folder into the experiment folder in place, in a background thread. A driver killed during that
copy leaves files empty or cut short, and the search could no longer be resumed ("not a search
experiment folder (Expecting value ...)"; seen once in four runs of the cluster test that
SIGKILLs the driver). So each time Ray saves its state, :class:`StateBackup` copies the staging
folder, whole by then, into :data:`BACKUP` as one set (a folder renamed into place), and
:func:`restore_state_backup` puts that set back before a resume reads the folder.

The backup is taken before Ray's copy starts, from the same files, so it is never older than
the state the copy would have left; and it holds the trials' results of the same moment (a
state that names an epoch whose results row was not copied yet would resume past a row that no
longer exists). Checkpoints are not in it: the trials write them to storage themselves, before
they report the epoch a state can name.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ray import tune

log = logging.getLogger(__name__)

#: The folder of the experiment that holds the last whole set of Ray's state files.
BACKUP = ".autoft_ray_state"
#: Ray's state files (``TuneController.CKPT_FILE_TMPL``, ``SearchGenerator.CKPT_FILE_TMPL``,
#: ``Searcher.CKPT_FILE_TMPL``), each named after the session that wrote it.
STATE_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


class StateBackup(tune.Callback):
    """Keeps :data:`BACKUP` in ``experiment_dir`` a copy of Ray's latest saved state."""

    def __init__(self, experiment_dir: Path) -> None:
        self.experiment_dir = Path(experiment_dir)
        self.staging: Path | None = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Where this session's driver stages the state (a resumed search stages elsewhere).
        self.staging = Path(trial.storage.experiment_driver_staging_path)

    def get_state(self) -> None:
        """Ray asks its callbacks for their state right after it wrote the experiment and
        searcher state into its staging folder and before it copies them out: the one moment
        they are known whole. This callback keeps no state of its own (None: nothing saved)."""
        if self.staging is not None:
            copy_state(self.staging, self.experiment_dir / BACKUP)
        return None


def copy_state(staging: Path, backup: Path) -> None:
    """Replace ``backup`` with a copy of Ray's staging folder, as one set: a kill at any point
    leaves either the old set or the new one (``backup`` or its ``.old``)."""
    if not any(staging.glob(STATE_FILES[0])):
        return
    backup.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(dir=backup.parent, prefix=f"{backup.name}.", suffix=".tmp"))
    shutil.copytree(staging, fresh, dirs_exist_ok=True)
    old = backup.with_name(f"{backup.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if backup.exists():
        backup.rename(old)
    fresh.rename(backup)
    shutil.rmtree(old, ignore_errors=True)


def restore_state_backup(experiment_dir: Path) -> list[str]:
    """Put the last whole copy of Ray's state and the trials' results back into
    ``experiment_dir`` before a resume reads them; the files that differed (relative paths).
    State files that a killed copy had left short are named in a warning. Without a backup (a
    search stopped before any trial started) nothing changes."""
    backup = experiment_dir / BACKUP
    if not backup.is_dir():
        backup = backup.with_name(f"{BACKUP}.old")
    if not backup.is_dir():
        return []
    broken = [path.name for pattern in STATE_FILES for path in experiment_dir.glob(pattern)
              if not _whole(path)]
    restored = []
    for saved in sorted(path for path in backup.rglob("*") if path.is_file()):
        target = experiment_dir / saved.relative_to(backup)
        if not target.is_file() or target.read_bytes() != saved.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(saved, target)
            restored.append(str(saved.relative_to(backup)))
    if broken:
        log.warning("%s: Ray's saved state was cut short when the search stopped (%s): "
                    "resuming from its last whole copy", experiment_dir, ", ".join(broken))
    return restored


def _whole(path: Path) -> bool:
    """Whether Ray's state file ``path`` reads back (JSON parses; a pickle loads)."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        else:
            with path.open("rb") as file:
                pickle.load(file)  # noqa: S301 (Ray's own state, as Ray itself loads it)
    except Exception:  # noqa: BLE001 (any failure to read back is a cut-short file)
        return False
    return True

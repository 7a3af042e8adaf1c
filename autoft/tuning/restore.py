"""A resumed trial restores from the newest of its checkpoints that still exists.

Ray saves the experiment's state (for each trial, the checkpoint it resumes from) every 10 s or
at the next step after a trial checkpointed, but deletes a trial's older checkpoint
(``CheckpointConfig.num_to_keep``) the moment a newer one is registered. A driver killed in
between leaves a state that names a deleted checkpoint, and ``autoft resume`` then failed that
trial on both tries with Ray's "Could not recover from checkpoint as it does not exist on
storage anymore" (CI, 7 December: ``test_driver_killed_then_resumed_on_the_cluster``, the driver
killed right after a trial's last epoch). Ray's own fallback to the latest available checkpoint
(ray-project/ray#29099) did not survive its storage rewrite, so the trainable keeps one: the
newest ``checkpoint_*`` folder beside the missing one, which is the one that deleted it.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow.fs
from ray import tune
from ray.train._internal.session import _TrainingResult

log = logging.getLogger(__name__)

#: How Ray names a trial's checkpoint folders (``checkpoint_000003``, from
#: ``StorageContext._make_checkpoint_dir_name``): sorted, newest last.
CHECKPOINT_PREFIX = "checkpoint_"


def present_checkpoint(restoring: Any) -> Any:
    """What to restore instead of ``restoring`` (Ray's result holding the checkpoint to
    restore): itself while its checkpoint exists, else the same result with the trial's newest
    checkpoint that does; None when none is left (the trial then starts from its first epoch).
    """
    checkpoint = getattr(restoring, "checkpoint", None)
    if not isinstance(checkpoint, tune.Checkpoint) or _exists(checkpoint.filesystem,
                                                               checkpoint.path):
        return restoring
    newest = _newest_checkpoint(checkpoint.filesystem, checkpoint.path.rsplit("/", 1)[0])
    if newest is None:
        log.warning("the checkpoint %s is gone and the trial has no other: it starts again",
                    checkpoint.path)
        return None
    log.warning("the checkpoint %s is gone (deleted after Ray's last saved state): resuming "
                "from %s", checkpoint.path, newest)
    return _TrainingResult(checkpoint=tune.Checkpoint(newest, checkpoint.filesystem),
                           metrics=restoring.metrics)


def _exists(filesystem: pyarrow.fs.FileSystem, path: str) -> bool:
    return filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def _newest_checkpoint(filesystem: pyarrow.fs.FileSystem, trial_path: str) -> str | None:
    selector = pyarrow.fs.FileSelector(trial_path, allow_not_found=True)
    folders = sorted(info.path for info in filesystem.get_file_info(selector)
                     if info.type == pyarrow.fs.FileType.Directory
                     and info.base_name.startswith(CHECKPOINT_PREFIX))
    return folders[-1] if folders else None


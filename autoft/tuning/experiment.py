"""The experiment folder of a search (``storage/name``): made once, exclusively, after every
check passed; its saved config is what ``resume``, ``export`` and ``sync`` read back.

A folder may be moved or copied: ``export`` reads it where it is now (its config follows the
folder), while ``resume`` refuses a folder that is not where the search was started, since the
search's Ray state and tracking name that place; it never writes into the original instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from autoft.core.config import Config, load_config
from autoft.core.errors import InputError
from autoft.core.files import write_text_atomic

log = logging.getLogger(__name__)

EXPERIMENT_CONFIG = "autoft_config.yaml"


def _taken(folder: Path) -> InputError:
    return InputError(f"{folder} already holds a search: continue it with "
                      f"`autoft resume {folder}`, or change name or storage")


def check_new_experiment(config: Config) -> None:
    """Refuse a new search whose folder is taken, before anything starts (Ray included);
    :func:`create_experiment` still makes the folder exclusively, for searches that race."""
    if config.experiment_dir.exists():
        raise _taken(config.experiment_dir)


def create_experiment(config: Config) -> Path:
    """Make the experiment folder and record the resolved config in it.

    The folder is created exclusively: of two searches racing for one name, one wins and the
    other is refused, and nothing of the winner's is touched.
    """
    folder = config.experiment_dir
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        raise _taken(folder) from None
    text = yaml.safe_dump(config.to_yaml_dict(), sort_keys=False)
    write_text_atomic(folder / EXPERIMENT_CONFIG, text)
    return folder


def _saved_config(folder: Path) -> Config:
    path = folder / EXPERIMENT_CONFIG
    if not path.is_file():
        raise InputError(f"{folder}: not an autoft experiment folder (no {EXPERIMENT_CONFIG})")
    return load_config(path)


def experiment_config(experiment_dir: Path) -> Config:
    """The config a search in ``experiment_dir`` was started with, its storage and name
    following the folder when it was moved or copied since (the MLflow experiment kept)."""
    folder = Path(experiment_dir).resolve()
    config = _saved_config(folder)
    if config.experiment_dir.resolve() == folder:
        return config
    log.warning("%s was saved as %s: reading it where it is now", folder, config.experiment_dir)
    tracking = config.tracking.model_copy(update={"experiment": config.experiment_name})
    return config.model_copy(update={"storage": folder.parent, "name": folder.name,
                                     "tracking": tracking})


def resumable_config(experiment_dir: Path) -> Config:
    """The config of a search to continue in ``experiment_dir``, which must be where it ran."""
    folder = Path(experiment_dir).resolve()
    config = _saved_config(folder)
    if config.experiment_dir.resolve() != folder:
        raise InputError(f"{experiment_dir}: this search ran in {config.experiment_dir} (the "
                         "folder was moved or copied since); `autoft resume` continues a search "
                         f"only in its own folder: move it back, or resume "
                         f"{config.experiment_dir}")
    return config

"""The built-in trainables by name: the one list that the registry, the backbone choice, the
checks and the CLI ask rather than naming ``text`` and ``image`` themselves."""

from __future__ import annotations

from dataclasses import dataclass

from autoft.core.metrics import TASK_METRICS


@dataclass(frozen=True)
class Builtin:
    """A built-in trainable: its module and what it needs of a config."""

    module: str
    #: Reads ``data`` with a ``model`` and takes the hyperparameters of :mod:`trainables.hparams`.
    fine_tunes: bool
    #: The tasks it learns (``task:``); empty: it has none (a script scores itself).
    tasks: tuple[str, ...] = ()
    #: The MLflow flavor that logs the model folders it saves (None: it saves none).
    mlflow_flavor: str | None = None


BUILTIN: dict[str, Builtin] = {
    "text": Builtin("trainables.text.trainable", fine_tunes=True, tasks=tuple(TASK_METRICS),
                    mlflow_flavor="transformers"),
    "image": Builtin("trainables.image.trainable", fine_tunes=True, tasks=("classification",),
                     mlflow_flavor="pytorch"),
    "script": Builtin("trainables.script", fine_tunes=False),
}

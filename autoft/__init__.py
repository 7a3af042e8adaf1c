"""autoft: hyperparameter search for fine-tuning pretrained PyTorch models.

A Ray Tune driver asks Optuna for trials, runs each trial (a PyTorch fine-tune of a transformers
or timm model with the ULMFiT strategies of :mod:`autoft.finetune`) and logs every trial to MLflow.

The Python API (:mod:`autoft.api`) is reached from here: ``autoft.search(config)``,
``autoft.resume(dir)``, ``autoft.export(dir)``, ``autoft.train(config)``,
``autoft.predict(model_dir, data)``, ``autoft.validate``.
It loads on first use, so ``import autoft.finetune`` (or a trainable on a machine without Ray)
does not import Ray and MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = ("search", "resume", "export", "train", "predict", "validate", "sync", "SearchResult",
        "TrainResult", "Validation")
__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("autoft.api"), name)
    raise AttributeError(f"module 'autoft' has no attribute {name!r}")

"""The PyTorch trainables that every trial runs, found by name with :func:`load_trainable`.

* ``text``: transformers sequence classification (:mod:`trainables.text`);
* ``image``: timm image classification (:mod:`trainables.image`);
* ``script``: any program that prints its score (:mod:`trainables.script`);
* ``"package.module:function"``: a user function ``fn(hparams, reporter) -> dict | None``.

This layer sits above :mod:`autoft.core` and :mod:`autoft.finetune` and below autoft's search,
tracking and CLI: it imports nothing from them.
"""

from trainables.api import Reporter, Trainable, TrialContext, TrialFailed
from trainables.registry import BUILTIN, load_trainable

__all__ = ["BUILTIN", "Reporter", "Trainable", "TrialContext", "TrialFailed", "load_trainable"]

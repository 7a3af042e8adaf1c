"""The PyTorch trainables that every trial runs, found by name with :func:`load_trainable`.

* ``text``: transformers models for every task (:mod:`trainables.text`);
* ``image``: timm image classification (:mod:`trainables.image`);
* ``script``: any program that prints its score (:mod:`trainables.script`);
* ``"package.module:function"``: a user function ``fn(hparams, reporter) -> dict | None``.

Layout, from the top (import-linter keeps it, ``pyproject.toml``):

* :mod:`trainables.registry` finds a trainable by name and checks a config against it;
* :mod:`trainables.profile` measures a dataset for ``autoft suggest`` (nothing else uses it);
* the modalities, independent of each other: :mod:`trainables.text` (tables, tagged sentences,
  tokens), :mod:`trainables.image` (files, the decoded-image cache, pretrained weights) and
  :mod:`trainables.script`;
* what they share: the one loop (:mod:`trainables.loop`), the tasks with their losses and
  metrics (:mod:`trainables.tasks`), the hyperparameters (:mod:`trainables.hparams`), the seeded
  splits (:mod:`trainables.splits`) and the contract with the driver (:mod:`trainables.api`).

This layer sits above :mod:`autoft.core` and :mod:`autoft.finetune` and below autoft's search,
tracking and CLI: it imports nothing from them.
"""

from trainables.api import Reporter, Trainable, TrialContext, TrialFailed
from trainables.registry import BUILTIN, load_trainable

__all__ = ["BUILTIN", "Reporter", "Trainable", "TrialContext", "TrialFailed", "load_trainable"]

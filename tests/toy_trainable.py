"""A user trainable (``trainable: "tests.toy_trainable:quadratic"``) for fast driver tests.

Its score rises with the epochs toward 1 - (learning_rate·1e3 - 0.5)², so searchers and
schedulers have something to find, in milliseconds instead of a fine-tune's seconds.
"""

from __future__ import annotations

from typing import Any

from trainables.api import Reporter


def quadratic(hparams: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    """Report ``num_epochs`` epochs of a score that peaks at learning_rate = 5e-4."""
    saved = reporter.restore()
    first = 0 if saved is None else saved["epoch"] + 1
    target = 1 - (hparams["learning_rate"] * 1e3 - 0.5) ** 2
    metrics: dict[str, float] = {}
    for epoch in range(first, int(hparams.get("num_epochs", 3))):
        progress = (epoch + 1) / hparams["num_epochs"]
        metrics = {"epoch": epoch, "train_loss": 1 - progress * target,
                   "eval_accuracy": progress * target, "lr": hparams["learning_rate"]}
        reporter.report(metrics, {"epoch": epoch})
    return metrics

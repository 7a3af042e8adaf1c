"""Classification metrics (scikit-learn): accuracy, macro F1 and Matthews correlation."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def classification_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """``accuracy``, ``f1`` (macro) and ``mcc`` of integer predictions against labels."""
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(labels, predictions)),
    }

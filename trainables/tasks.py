"""What a fine-tune learns: one small object per task that the one loop calls.

A :class:`Task` knows the width of the model's output, its loss, what evaluation keeps of each
batch and the metrics computed from that (the names of :mod:`autoft.core.metrics`):

* ``classification``: one class per example; cross-entropy; accuracy, macro F1, MCC;
* ``regression``: one number per example (a head of width 1); mean squared error; Pearson and
  Spearman correlation (scipy) and RMSE;
* ``multi_label``: any number of labels per example (a 0/1 vector); binary cross-entropy on the
  logits; micro and macro F1 at the ``threshold`` hyperparameter and the mean average precision
  of the probabilities (scikit-learn);
* ``token_classification``: a tag per word (its first sub-token; the other sub-tokens, special
  tokens and padding carry :data:`IGNORE`); token cross-entropy; entity-level precision, recall
  and F1 with seqeval (CoNLL's definition: an entity counts when its type and span are exact).

The loop (:mod:`trainables.loop`) stays one loop: it asks the task for the loss of a batch and
for its metrics, never which task it is.

Example::

    task = make_task("multi_label", ["joy", "anger", "neutral"], threshold=0.4)
    task.num_outputs                      # 3
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

#: The label of a position no loss or metric looks at (PyTorch's ``ignore_index`` default).
IGNORE = -100
#: The frequency a multi-label head's prior gives a label that training never shows.
RARE = 1e-4


@dataclass(frozen=True)
class Task:
    """A task over ``label_names`` (the classes, labels or tags; none for regression)."""

    label_names: tuple[str, ...] = ()
    #: Multi-label: a label is predicted where its probability is at least this.
    threshold: float = 0.5

    name: ClassVar[str]
    #: The dtype of the labels a batch carries.
    label_dtype: ClassVar[np.dtype] = np.dtype(np.int64)

    @property
    def num_outputs(self) -> int:
        """The width of the model's output layer."""
        return len(self.label_names)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The batch's mean loss (``logits`` in fp32)."""
        raise NotImplementedError

    def loss_weight(self, labels: torch.Tensor) -> torch.Tensor:
        """How many terms :meth:`loss` averages over a batch with ``labels`` (every label): its
        weight when the workers of a data-parallel trial make one mean of their rows' losses."""
        return torch.tensor(float(labels.numel()), device=labels.device)

    def collect(self, logits: torch.Tensor, labels: torch.Tensor) -> Any:
        """What evaluation keeps of one batch (on the CPU) for :meth:`metrics`."""
        raise NotImplementedError

    def metrics(self, collected: Sequence[Any]) -> dict[str, float]:
        """The task's metrics over every evaluation batch's :meth:`collect`."""
        raise NotImplementedError

    def predict(self, logits: torch.Tensor, labels: torch.Tensor) -> list[dict[str, Any]]:
        """What the model says of each example of a batch, by name (``autoft predict``);
        ``labels`` matter only where they mark the positions evaluation scores (tags)."""
        raise NotImplementedError

    def prior(self, labels: np.ndarray) -> np.ndarray | None:
        """The output bias at which a new head starts, from the training labels: the outputs
        the labels' prior gives, before any input is looked at (None: zero, the layer's own).

        A head that starts at 0 must first move its outputs to the prior, which its bias, at
        AdamW's step of about the learning rate, cannot do within a fine-tune (a mean STS-B
        score of 2.7 is 27000 steps at 1e-4), so the body's features are bent to do it instead
        (Lin et al. 2017, "Focal Loss", section 3.3). Measured on MiniLM, one epoch at 1e-4:
        STS-B (2000 pairs) Pearson 0.80 against 0.32 from zero; CoNLL-2003 (1500 sentences,
        83% ``O``) entity F1 0.42 against 0.28; GoEmotions below. Single-label classification
        keeps zero: its benchmarks (mostly balanced classes) were measured so."""
        return None


class Classification(Task):
    name = "classification"

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def collect(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, ...]:
        return logits.argmax(-1).cpu().numpy(), labels.cpu().numpy()

    def metrics(self, collected: Sequence[tuple[np.ndarray, ...]]) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

        predictions, labels = _concat(collected)
        return {"accuracy": float(accuracy_score(labels, predictions)),
                "f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
                "mcc": float(matthews_corrcoef(labels, predictions))}

    def predict(self, logits: torch.Tensor, labels: torch.Tensor) -> list[dict[str, Any]]:
        probabilities = torch.softmax(logits, -1).cpu().numpy()
        return [{"label": self.label_names[int(row.argmax())],
                 "probabilities": _by_name(self.label_names, row)} for row in probabilities]


class Regression(Task):
    name = "regression"
    label_dtype = np.dtype(np.float32)

    @property
    def num_outputs(self) -> int:
        return 1

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits.squeeze(-1), labels)

    def collect(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, ...]:
        return logits.squeeze(-1).cpu().numpy(), labels.cpu().numpy()

    def metrics(self, collected: Sequence[tuple[np.ndarray, ...]]) -> dict[str, float]:
        """Pearson, Spearman and RMSE; a correlation that is undefined (constant predictions,
        as a model that has not left the mean yet makes) counts as 0, not NaN."""
        from scipy.stats import pearsonr, spearmanr

        predictions, labels = _concat(collected)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on a constant input, then says NaN
            pearson = float(pearsonr(predictions, labels).statistic) if len(labels) > 1 \
                else math.nan
            spearman = float(spearmanr(predictions, labels).statistic) if len(labels) > 1 \
                else math.nan
        rmse = float(np.sqrt(np.mean((predictions.astype(np.float64) - labels) ** 2)))
        return {"pearson": _defined(pearson), "spearman": _defined(spearman), "rmse": rmse}

    def predict(self, logits: torch.Tensor, labels: torch.Tensor) -> list[dict[str, Any]]:
        return [{"value": float(value)} for value in logits.squeeze(-1).cpu().numpy()]

    def prior(self, labels: np.ndarray) -> np.ndarray:
        """The mean score.

        >>> make_task("regression").prior(np.array([1.0, 2.0, 6.0]))
        array([3.])
        """
        return np.array([float(np.mean(labels))])


class MultiLabel(Task):
    name = "multi_label"
    label_dtype = np.dtype(np.float32)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, labels)

    def collect(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, ...]:
        return torch.sigmoid(logits).cpu().numpy(), labels.cpu().numpy()

    def metrics(self, collected: Sequence[tuple[np.ndarray, ...]]) -> dict[str, float]:
        """Micro and macro F1 at the threshold; the mean average precision over the labels
        that occur in the evaluation data (the others have none to rank)."""
        from sklearn.metrics import average_precision_score, f1_score

        probabilities, labels = _concat(collected)
        truth = labels > 0.5
        predicted = probabilities >= self.threshold
        present = truth.any(axis=0)
        return {
            "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "map": float(average_precision_score(truth[:, present], probabilities[:, present],
                                                 average="macro")) if present.any() else 0.0,
        }

    def predict(self, logits: torch.Tensor, labels: torch.Tensor) -> list[dict[str, Any]]:
        probabilities = torch.sigmoid(logits).cpu().numpy()
        return [{"labels": [name for name, p in zip(self.label_names, row, strict=True)
                            if p >= self.threshold],
                 "probabilities": _by_name(self.label_names, row)} for row in probabilities]

    def prior(self, labels: np.ndarray) -> np.ndarray:
        """Each label's log-odds in the training labels (a label never seen: those of
        :data:`RARE`). On 2000 GoEmotions comments, one epoch at 1e-4, batch 16, threshold 0.3:
        micro-F1 0.43 and mAP 0.21 from this start, against 0.30 (``neutral`` for every comment)
        and 0.06 from zero.

        >>> make_task("multi_label", ["a", "b"]).prior(np.array([[1, 0], [0, 0]])).round(2)
        array([ 0.  , -9.21])
        """
        frequency = np.clip(np.mean(labels, axis=0), RARE, 1 - RARE)
        return np.log(frequency / (1 - frequency))


class TokenClassification(Task):
    name = "token_classification"

    def prior(self, labels: np.ndarray) -> np.ndarray:
        """Each tag's log frequency over the scored positions (a softmax's prior)."""
        counts = np.bincount(labels[labels != IGNORE], minlength=len(self.label_names))
        return np.log(np.clip(counts / max(counts.sum(), 1), RARE, None))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)

    def loss_weight(self, labels: torch.Tensor) -> torch.Tensor:
        """The scored tokens (not :data:`IGNORE`)."""
        return (labels != IGNORE).sum().float()

    def collect(self, logits: torch.Tensor,
                labels: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per example, the predicted and the true tag ids of its words."""
        predictions, labels_np = logits.argmax(-1).cpu().numpy(), labels.cpu().numpy()
        kept = labels_np != IGNORE
        return [(row[keep], gold[keep]) for row, gold, keep in zip(predictions, labels_np, kept,
                                                                   strict=True)]

    def metrics(self, collected: Sequence[list[tuple[np.ndarray, np.ndarray]]]
                ) -> dict[str, float]:
        from seqeval.metrics import f1_score, precision_score, recall_score

        names = self.label_names
        pairs = [pair for batch in collected for pair in batch]
        predicted = [[names[i] for i in row] for row, _ in pairs]
        gold = [[names[i] for i in row] for _, row in pairs]
        return {name: float(score(gold, predicted, zero_division=0)) for name, score in (
            ("entity_f1", f1_score), ("entity_precision", precision_score),
            ("entity_recall", recall_score))}

    def predict(self, logits: torch.Tensor, labels: torch.Tensor) -> list[dict[str, Any]]:
        """The tag of each word the model saw (at its first sub-token, which ``labels`` marks
        with anything but :data:`IGNORE`)."""
        return [{"tags": [self.label_names[i] for i in row]}
                for row, _ in self.collect(logits, labels)]


#: Every task by its config name (``task:``).
TASKS: dict[str, type[Task]] = {task.name: task for task in (
    Classification, Regression, MultiLabel, TokenClassification)}


def make_task(name: str, label_names: Sequence[str] = (), threshold: float = 0.5) -> Task:
    """The task called ``name`` over ``label_names``."""
    return TASKS[name](tuple(label_names), threshold)


def _concat(collected: Sequence[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate(parts) for parts in zip(*collected, strict=True))


def _defined(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _by_name(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {name: round(float(value), 6) for name, value in zip(names, values, strict=True)}

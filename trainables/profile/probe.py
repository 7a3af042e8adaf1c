"""What a dataset is like, and how close it is to what the model was pretrained on.

The PaddleHub study's advice on how to fine-tune depends on two axes: the size of the dataset
and its similarity to the pretraining data. :func:`measure` reads a config's data with the
trainable's own ``prepare`` (the same reading, checks and held-out split as a search) and
returns a :class:`Profile`: the task and why, examples, what fits the task's labels (class
balance; the distribution of a regression's scores; labels per example of a multi-label task;
entities per type of a token task), text lengths in tokens or image sizes, and the **similarity
probe**: a linear model (scikit-learn, on standardised features) trained on the frozen features
of the pretrained model and of the same architecture randomly initialised, scored the task's way
(:data:`PROBE_SCORES`: balanced accuracy of a logistic regression for classes and tags, R² of a
ridge regression for scores, micro-F1 of one logistic regression per label for multi-label).
Pretrained features that predict the labels far better than random ones mean the pretraining
already knows the task's distinctions.

Text features are the mean of the last hidden states over the tokens (at most
:data:`PROBE_LENGTH`), for a token task the hidden state of each word's first sub-token; image
features timm's pooled features under the model's evaluation transform. At most
:data:`PROBE_TRAIN` training and :data:`PROBE_EVAL` evaluation examples are used (seeded), so
the probe takes a few minutes on a CPU whatever the dataset's size.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, f1_score, r2_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from autoft.core.config import Config
from autoft.core.errors import InputError
from trainables.splits import subsample_positions
from trainables.tasks import IGNORE

#: Training examples the probe's classifier learns from, at most.
PROBE_TRAIN = 1000
#: Evaluation examples the probe is scored on, at most.
PROBE_EVAL = 500
#: Tokens per sentence the text probe reads, at most.
PROBE_LENGTH = 128
#: Examples per forward pass of the probe.
PROBE_BATCH = 32
#: Seed of the random initialisation and of the subsamples.
PROBE_SEED = 0


@dataclass(frozen=True)
class Probe:
    """The score of a linear model on frozen pretrained vs random features (1 is perfect)."""

    pretrained: float
    random: float
    train_examples: int
    eval_examples: int

    @property
    def similarity(self) -> float:
        """The share of what random features miss that pretrained features recover:
        ``(pretrained - random) / (1 - random)``, 1 when the pretrained probe is perfect."""
        return (self.pretrained - self.random) / max(1e-9, 1 - self.random)


@dataclass(frozen=True)
class Profile:
    """A dataset's measurements for one model."""

    trainable: str
    train_examples: int
    eval_examples: int
    eval_source: str
    #: The classes, labels or tags (none for regression).
    classes: list[str]
    #: Per class: training examples (classification), positive examples (multi-label) or words
    #: (tags), in the order of ``classes``.
    class_counts: list[int]
    #: Percentiles 50, 90, 95, 99 and the maximum of the token lengths (text) or of the
    #: shorter image side in pixels (image), over the training examples.
    lengths: dict[str, int]
    #: The model's own limit on the length (text: its maximum tokens; image: its input side).
    model_limit: int
    probe: Probe
    #: What is learnt, and why (:func:`trainables.registry.resolve_task`).
    task: str = "classification"
    task_why: str = ""
    #: What fits the task: a regression's score percentiles, mean and std; labels per example
    #: of a multi-label task; entities per type of a token task.
    label_summary: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def minority_share(self) -> float:
        """The smallest class's count over the largest's (1: balanced; regression: 1)."""
        return min(self.class_counts) / max(self.class_counts) if self.class_counts else 1.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values, the similarity and balance included (for notes and benchmarks)."""
        return {**dataclasses.asdict(self), "minority_share": round(self.minority_share, 4),
                "similarity": round(self.probe.similarity, 4)}


def _percentiles(values: Sequence[int]) -> dict[str, int]:
    array = np.asarray(values)
    return {**{f"p{q}": int(np.percentile(array, q)) for q in (50, 90, 95, 99)},
            "max": int(array.max())}


def _subset(count: int, limit: int) -> list[int]:
    return subsample_positions(count, limit, PROBE_SEED)


def linear_probe(train: np.ndarray, train_labels: np.ndarray, evaluation: np.ndarray,
                 eval_labels: np.ndarray) -> float:
    """Balanced accuracy on ``evaluation`` of a logistic regression fitted on ``train``.

    >>> rng = np.random.default_rng(0)
    >>> labels = np.arange(200) % 2
    >>> features = rng.normal(size=(200, 8)) + labels[:, None]
    >>> linear_probe(features[:100], labels[:100], features[100:], labels[100:]) > 0.8
    True
    """
    if len(np.unique(train_labels)) < 2:  # a tiny subsample of one class: it is all one knows
        predictions = np.full_like(eval_labels, train_labels[0])
    else:
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        predictions = classifier.fit(train, train_labels).predict(evaluation)
    return float(balanced_accuracy_score(eval_labels, predictions))


def ridge_probe(train: np.ndarray, train_scores: np.ndarray, evaluation: np.ndarray,
                eval_scores: np.ndarray) -> float:
    """R² (at least 0) on ``evaluation`` of a ridge regression fitted on ``train``."""
    model = make_pipeline(StandardScaler(), Ridge(alpha=10.0))
    return max(0.0, float(r2_score(eval_scores, model.fit(train, train_scores)
                                   .predict(evaluation))))


def multi_label_probe(train: np.ndarray, train_labels: np.ndarray, evaluation: np.ndarray,
                      eval_labels: np.ndarray) -> float:
    """Micro-F1 on ``evaluation`` of one logistic regression per label fitted on ``train``
    (a label that is never or always there in the subsample is predicted absent)."""
    varied = train_labels.any(axis=0) & ~train_labels.all(axis=0)
    predictions = np.zeros(eval_labels.shape, dtype=bool)
    if varied.any():
        model = make_pipeline(StandardScaler(),
                              OneVsRestClassifier(LogisticRegression(max_iter=2000)))
        predictions[:, varied] = model.fit(train, train_labels[:, varied]).predict(evaluation)
    return float(f1_score(eval_labels > 0.5, predictions, average="micro", zero_division=0))


#: How the probe of each task scores a linear model on features.
PROBE_SCORES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]] = {
    "classification": linear_probe, "token_classification": linear_probe,
    "regression": ridge_probe, "multi_label": multi_label_probe}


def _probe(passes: Callable[[str], tuple[np.ndarray, ...]],
           task: str = "classification") -> Probe:
    """The probe over ``passes(split)``: that split's pretrained features, random features
    and labels, scored as ``task`` scores (:data:`PROBE_SCORES`)."""
    (*train, train_labels), (*evaluation, eval_labels) = passes("train"), passes("eval")
    score = PROBE_SCORES[task]
    scores = [score(train[i], train_labels, evaluation[i], eval_labels) for i in (0, 1)]
    return Probe(pretrained=round(scores[0], 4), random=round(scores[1], 4),
                 train_examples=len(train_labels), eval_examples=len(eval_labels))


def _batches(count: int) -> Iterator[slice]:
    for start in range(0, count, PROBE_BATCH):
        yield slice(start, start + PROBE_BATCH)


def _features(models: Sequence[torch.nn.Module], batches: Iterator[Any],
              forward: Callable[[torch.nn.Module, Any], torch.Tensor]
              ) -> tuple[np.ndarray, ...]:
    """Each model's features over the same batches (one read of the data for all models)."""
    out: list[list[np.ndarray]] = [[] for _ in models]
    with torch.inference_mode():
        for batch in batches:
            for found, model in zip(out, models, strict=True):
                found.append(forward(model, batch).float().numpy())
    return tuple(np.concatenate(found) for found in out)


def _counts(labels: np.ndarray, classes: int) -> list[int]:
    return np.bincount(labels, minlength=classes).tolist()


def _text_profile(config: Config, task_why: str) -> Profile:
    from transformers import AutoConfig, AutoModel

    from trainables.text import tokens
    from trainables.text import trainable as text

    prepared = text.prepare(config)
    splits = {"train": prepared.train, "eval": prepared.eval}
    rows = {"train": np.asarray(_subset(len(prepared.train), PROBE_TRAIN)),
            "eval": np.asarray(_subset(len(prepared.eval), PROBE_EVAL))}
    pretrained = AutoModel.from_pretrained(prepared.model, trust_remote_code=False)
    torch.manual_seed(PROBE_SEED)
    random = AutoModel.from_config(AutoConfig.from_pretrained(prepared.model,
                                                              trust_remote_code=False))
    models = [pretrained.eval(), random.eval()]
    per_token = prepared.train.per_token

    def features(hidden: torch.Tensor, inputs: dict[str, torch.Tensor],
                 words: torch.Tensor) -> torch.Tensor:
        """Each word's first sub-token (token task), else the mean over the tokens."""
        if per_token:
            return hidden[words]
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)

    def passes(split: str) -> tuple[np.ndarray, ...]:
        encoded = tokens.truncate(splits[split], PROBE_LENGTH)
        found: list[list[np.ndarray]] = [[] for _ in models]
        labels = []
        with torch.inference_mode():
            for part in _batches(len(rows[split])):
                inputs, batch_labels = tokens.collate(encoded, rows[split][part], prepared.pad_id)
                words = batch_labels != IGNORE
                for out, model in zip(found, models, strict=True):
                    hidden = model(**inputs).last_hidden_state
                    out.append(features(hidden, inputs, words).float().numpy())
                labels.append((batch_labels[words] if per_token else batch_labels).numpy())
        return (*(np.concatenate(out) for out in found), np.concatenate(labels))

    counts, summary = _label_counts(prepared.task, prepared.train, prepared.label_names)
    return Profile(
        trainable="text", train_examples=len(prepared.train), eval_examples=len(prepared.eval),
        eval_source=prepared.eval_source, classes=prepared.label_names, class_counts=counts,
        lengths=_percentiles(prepared.train.lengths.tolist()),
        model_limit=prepared.model_max_length, probe=_probe(passes, prepared.task),
        task=prepared.task, task_why=task_why, label_summary=summary)


def _label_counts(task: str, train: Any, names: list[str]) -> tuple[list[int], dict[str, float]]:
    """Per class the training examples (classification), positives (multi-label) or words
    (tags), and what else fits the task's labels (:attr:`Profile.label_summary`)."""
    labels = train.labels
    if task == "regression":
        percentiles = {f"p{q}": round(float(np.percentile(labels, q)), 3)
                       for q in (0, 25, 50, 75, 100)}
        return [], {**percentiles, "mean": round(float(labels.mean()), 3),
                    "std": round(float(labels.std()), 3)}
    if task == "multi_label":
        per_example = labels.sum(axis=1)
        return labels.sum(axis=0).astype(int).tolist(), {
            "labels_per_example": round(float(per_example.mean()), 3),
            "most_labels": int(per_example.max()),
            "without_label": int((per_example == 0).sum())}
    if task == "token_classification":
        from seqeval.metrics.sequence_labeling import get_entities

        words = labels[labels != IGNORE]
        sentences = [[names[t] for t in labels[start:end] if t != IGNORE]
                     for start, end in zip(train.offsets[:-1], train.offsets[1:], strict=True)]
        entities = Counter(kind for kind, _, _ in get_entities(sentences))
        return np.bincount(words, minlength=len(names)).tolist(), {
            **{f"entities_{kind}": count for kind, count in sorted(entities.items())},
            "entities_per_sentence": round(sum(entities.values()) / max(len(sentences), 1), 3)}
    return _counts(labels, len(names)), {}


def _shorter_side(path: str) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return min(image.size)


def _image_profile(config: Config, task_why: str) -> Profile:
    from timm.data import create_transform, resolve_model_data_config

    from trainables.image import files as images
    from trainables.image import trainable as image

    folders = image.read_folders(config)
    seed, data = config.search.seed, config.data
    splits = {"train": [folders.train[i] for i in subsample_positions(
                  len(folders.train), data.max_train_samples, seed)],
              "eval": [folders.eval[i] for i in subsample_positions(
                  len(folders.eval), data.max_eval_samples, seed)]}
    model, body = image.model_with_body(config)
    data_config = resolve_model_data_config(model)
    transform = create_transform(**data_config)
    rows = {split: _subset(len(items), PROBE_TRAIN if split == "train" else PROBE_EVAL)
            for split, items in splits.items()}
    torch.manual_seed(PROBE_SEED)
    random = image.create_model(config.model, 0).eval()
    models = [random] if body is None else [image.create_model(config.model, 0, body).eval(),
                                            random]

    def pixels(items: list[images.Item]) -> torch.Tensor:
        return torch.stack([transform(images.load_rgb(path)) for path, _ in items])

    def passes(split: str) -> tuple[np.ndarray, ...]:
        chosen = [splits[split][i] for i in rows[split]]
        found = _features(models, (pixels(chosen[part]) for part in _batches(len(chosen))),
                          lambda model, batch: model(batch))
        return found[0], found[-1], np.asarray([label for _, label in chosen])

    return Profile(
        trainable="image", train_examples=len(splits["train"]),
        eval_examples=len(splits["eval"]), eval_source=folders.eval_source,
        classes=folders.classes,
        class_counts=_counts(np.asarray([label for _, label in splits["train"]]),
                             len(folders.classes)),
        lengths=_percentiles([_shorter_side(path) for path, _ in splits["train"]]),
        model_limit=int(data_config["input_size"][-1]), probe=_probe(passes),
        task_why=task_why)


PROFILES: dict[str, Callable[[Config, str], Profile]] = {"text": _text_profile,
                                                         "image": _image_profile}


def measure(config: Config, task_why: str = "") -> Profile:
    """The dataset of ``config`` measured for its model (``trainable`` text or image) and its
    task (``task_why`` says why it is that task)."""
    if config.trainable not in PROFILES:
        raise InputError(f"trainable {config.trainable!r}: suggest measures the built-in text "
                         "and image trainables only")
    return PROFILES[config.trainable](config, task_why)

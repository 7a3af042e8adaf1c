"""What a dataset is like, and how close it is to what the model was pretrained on.

The PaddleHub study's advice on how to fine-tune depends on two axes: the size of the dataset
and its similarity to the pretraining data. :func:`measure` reads a config's data with the
trainable's own ``prepare`` (the same reading, checks and held-out split as a search) and
returns a :class:`Profile`: examples, classes, balance, text lengths in tokens or image sizes,
and the **similarity probe**: the balanced accuracy of a linear classifier (scikit-learn's
logistic regression on standardised features) trained on the frozen features of the pretrained
model and of the same architecture randomly initialised. Pretrained features that separate the
classes far better than random ones mean the pretraining already knows the task's distinctions.

Text features are the mean of the last hidden states over the tokens (at most
:data:`PROBE_LENGTH`), image features timm's pooled features under the model's evaluation
transform. At most :data:`PROBE_TRAIN` training and :data:`PROBE_EVAL` evaluation examples are
used (seeded), so the probe takes a few minutes on a CPU whatever the dataset's size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from autoft.core.config import Config
from autoft.core.errors import InputError
from trainables.splits import subsample_positions

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
    """Balanced accuracy of a linear classifier on frozen pretrained vs random features."""

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
    classes: list[str]
    #: Training examples per class, in the order of ``classes``.
    class_counts: list[int]
    #: Percentiles 50, 90, 95, 99 and the maximum of the token lengths (text) or of the
    #: shorter image side in pixels (image), over the training examples.
    lengths: dict[str, int]
    #: The model's own limit on the length (text: its maximum tokens; image: its input side).
    model_limit: int
    probe: Probe

    @property
    def minority_share(self) -> float:
        """The smallest class's count over the largest's (1: balanced)."""
        return min(self.class_counts) / max(self.class_counts)

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


def _probe(passes: Callable[[str], tuple[np.ndarray, np.ndarray]], train_labels: np.ndarray,
           eval_labels: np.ndarray) -> Probe:
    """The probe over ``passes(split)``: that split's (pretrained, random) features."""
    train, evaluation = passes("train"), passes("eval")
    scores = [linear_probe(train[i], train_labels, evaluation[i], eval_labels) for i in (0, 1)]
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


def _text_profile(config: Config) -> Profile:
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

    def mean_hidden(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return (model(**inputs).last_hidden_state * mask).sum(1) / mask.sum(1)

    def passes(split: str) -> tuple[np.ndarray, np.ndarray]:
        encoded = tokens.truncate(splits[split], PROBE_LENGTH)
        batches = (tokens.collate(encoded, rows[split][part], prepared.pad_id)[0]
                   for part in _batches(len(rows[split])))
        return _features(models, batches, mean_hidden)

    return Profile(
        trainable="text", train_examples=len(prepared.train), eval_examples=len(prepared.eval),
        eval_source=prepared.eval_source, classes=prepared.label_names,
        class_counts=_counts(prepared.train.labels, len(prepared.label_names)),
        lengths=_percentiles(prepared.train.lengths.tolist()),
        model_limit=prepared.model_max_length,
        probe=_probe(passes, prepared.train.labels[rows["train"]],
                     prepared.eval.labels[rows["eval"]]))


def _shorter_side(path: str) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return min(image.size)


def _image_profile(config: Config) -> Profile:
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

    def passes(split: str) -> tuple[np.ndarray, np.ndarray]:
        chosen = [splits[split][i] for i in rows[split]]
        found = _features(models, (pixels(chosen[part]) for part in _batches(len(chosen))),
                          lambda model, batch: model(batch))
        return (found[0], found[-1])

    labels = {split: np.asarray([splits[split][i][1] for i in rows[split]]) for split in rows}
    return Profile(
        trainable="image", train_examples=len(splits["train"]),
        eval_examples=len(splits["eval"]), eval_source=folders.eval_source,
        classes=folders.classes,
        class_counts=_counts(np.asarray([label for _, label in splits["train"]]),
                             len(folders.classes)),
        lengths=_percentiles([_shorter_side(path) for path, _ in splits["train"]]),
        model_limit=int(data_config["input_size"][-1]),
        probe=_probe(passes, labels["train"], labels["eval"]))


PROFILES: dict[str, Callable[[Config], Profile]] = {"text": _text_profile,
                                                    "image": _image_profile}


def measure(config: Config) -> Profile:
    """The dataset of ``config`` measured for its model (``trainable`` text or image)."""
    if config.trainable not in PROFILES:
        raise InputError(f"trainable {config.trainable!r}: suggest measures the built-in text "
                         "and image trainables only")
    return PROFILES[config.trainable](config)

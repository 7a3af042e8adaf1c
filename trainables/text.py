"""The text trainable (``trainable: text``): a transformers sequence classifier.

``prepare`` reads the tables (:mod:`trainables.tables`), maps the string labels to ids and
tokenises every example once, up to the model's maximum length (:mod:`trainables.tokens`); the
result is small flat numpy arrays for Ray's object store. ``fit`` cuts the examples to the
trial's ``max_length``, builds ``AutoModelForSequenceClassification`` (labels saved as
``id2label`` / ``label2id`` in its config) and runs :func:`trainables.loop.run` with seeded
length-grouped batches padded per batch. ``model`` is a Hugging Face model folder (or a hub id
where a hub is reachable); ``trust_remote_code`` stays off.

Without ``data.eval`` a seeded 10% of the training rows (seed ``search.seed``) is held out for
evaluation, before ``max_train_samples`` subsamples the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoft.core.config import Config
from autoft.core.errors import InputError
from trainables import tables, tokens
from trainables.api import Reporter
from trainables.hparams import HParams, parse_hparams
from trainables.loop import Runtime, Task, peak_memory, run
from trainables.splits import HOLDOUT_FRACTION

logger = logging.getLogger(__name__)

#: Evaluation batch size (no gradients: larger batches are cheaper per example).
EVAL_BATCH_SIZE = 64
#: Truncation in ``prepare`` when neither tokenizer nor model config states a maximum.
FALLBACK_MAX_LENGTH = 512


@dataclass(frozen=True)
class TextData:
    """What ``prepare`` hands every trial: tokenised splits and the label names."""

    model: str
    label_names: list[str]
    pad_id: int
    train: tokens.Encoded
    eval: tokens.Encoded
    eval_source: str
    #: The most tokens the model takes in one input (what ``prepare`` truncated at).
    model_max_length: int


def _load_tokenizer(model: str):
    from transformers import AutoConfig, AutoTokenizer

    try:
        model_config = AutoConfig.from_pretrained(model, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"model: {model} is not a Hugging Face model folder or reachable hub "
                         f"id: {reason}") from None
    if not tokenizer.is_fast:
        raise InputError(f"model: {model}: its tokenizer has no fast (tokenizers) version")
    return model_config, tokenizer


def _max_length(model_config, tokenizer) -> int:
    """The longest input the model takes: the tokenizer's limit, else its position count."""
    limits = [n for n in (tokenizer.model_max_length,
                          getattr(model_config, "max_position_embeddings", None))
              if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits, default=FALLBACK_MAX_LENGTH)


def prepare(config: Config) -> TextData:
    """Read, check and tokenise the train and eval data once per search."""
    data = config.data
    if data is None or not config.model:
        raise InputError("trainable text needs model and data")
    seed = config.search.seed
    train, declared = tables.read_split(data, data.train)
    if data.eval is not None:
        evaluation, _ = tables.read_split(data, data.eval)
        eval_source = str(data.eval)
    else:
        train, evaluation = tables.split_holdout(train, seed)
        eval_source = f"a seeded {HOLDOUT_FRACTION:.0%} of {data.train}"
        logger.warning("data.eval is not set: evaluating on %s (%d rows)", eval_source,
                       len(evaluation))
    train = tables.subsample(train, data.max_train_samples, seed)
    evaluation = tables.subsample(evaluation, data.max_eval_samples, seed)
    names = tables.label_names(train.labels, declared)
    if len(names) < 2:
        raise InputError(f"{data.train}: the training data has only one label ({names[0]!r}); "
                         "a classifier needs at least 2")
    train_ids = tables.encode_labels(train.labels, names, str(data.train))
    eval_ids = tables.encode_labels(evaluation.labels, names, eval_source)

    model_config, tokenizer = _load_tokenizer(config.model)
    limit = _max_length(model_config, tokenizer)
    return TextData(
        model=config.model, label_names=names, pad_id=tokenizer.pad_token_id or 0,
        train=tokens.encode(tokenizer, train.texts, train.pairs, train_ids, limit),
        eval=tokens.encode(tokenizer, evaluation.texts, evaluation.pairs, eval_ids, limit),
        eval_source=eval_source, model_max_length=limit)


def load_model(prepared: TextData):
    """The pretrained body with a new classification head for ``prepared``'s labels."""
    from transformers import AutoModelForSequenceClassification

    names = prepared.label_names
    return AutoModelForSequenceClassification.from_pretrained(
        prepared.model, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)}, trust_remote_code=False)


def save_model(prepared: TextData, model_state: dict[str, Any], folder: Path) -> None:
    """A ``save_pretrained`` folder (weights, config with id2label/label2id, tokenizer) that
    ``AutoModelForSequenceClassification.from_pretrained(folder)`` loads.

    The files are written in place: give a fresh folder and rename it when this returns, as
    ``autoft train`` does (``.NAME.partial``), so that no reader sees half a model."""
    from transformers import AutoTokenizer

    model = load_model(prepared)
    model.load_state_dict(model_state)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(prepared.model, trust_remote_code=False).save_pretrained(folder)


def make_task(prepared: TextData, hp: HParams) -> Callable[[Runtime], Task]:
    """The loop's :class:`Task` for ``prepared`` under ``hp`` (built once the seed is set)."""
    train = tokens.truncate(prepared.train, hp.max_length)
    evaluation = tokens.truncate(prepared.eval, hp.max_length)

    def train_batches(epoch: int):
        rng = np.random.default_rng([hp.seed, epoch])
        for indices in tokens.length_grouped_batches(train.lengths, hp.batch_size, rng):
            yield tokens.collate(train, indices, prepared.pad_id)

    def build(runtime: Runtime) -> Task:
        return Task(model=load_model(prepared), train_batches=train_batches,
                    steps_per_epoch=-(-len(train) // hp.batch_size),
                    eval_batches=lambda: tokens.sorted_batches(evaluation, EVAL_BATCH_SIZE,
                                                               prepared.pad_id),
                    forward=lambda model, inputs: model(**inputs).logits)

    return build


def fit(config: Config, prepared: TextData, hparams: dict[str, Any],
        reporter: Reporter) -> dict[str, float]:
    """One fine-tune of the text classifier with ``hparams``."""
    hp = parse_hparams(hparams, "text")
    return run(config, hp, reporter, make_task(prepared, hp))


def measure_memory(config: Config, prepared: TextData, hparams: dict[str, Any]) -> int:
    """Peak GPU bytes of a trial with ``hparams`` over its first steps (0 without CUDA)."""
    hp = parse_hparams(hparams, "text")
    return peak_memory(config, hp, make_task(prepared, hp))

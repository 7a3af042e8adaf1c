"""The text trainable (``trainable: text``): a transformers model with the task's head.

``prepare`` reads the data (tables, :mod:`trainables.text.tables`; tagged sentences,
:mod:`trainables.text.sequences`), turns the labels into the task's arrays (class ids, scores,
0/1 label matrices, a tag per word) and tokenises every example once, up to the model's maximum
length (:mod:`trainables.text.tokens`); the result is small flat numpy arrays for Ray's object
store.
``fit`` cuts the examples to the trial's ``max_length``, builds the task's head
(``AutoModelForSequenceClassification`` for classification, regression and multi-label with
transformers' ``problem_type``; ``AutoModelForTokenClassification`` for tags; label names saved
as ``id2label`` / ``label2id`` in its config) and runs :func:`trainables.loop.run` with seeded
length-grouped batches padded per batch. ``model`` is a Hugging Face model folder (or a hub id
where a hub is reachable); ``trust_remote_code`` stays off.

Without ``data.eval`` a seeded 10% of the training rows (seed ``search.seed``) is held out for
evaluation, before ``max_train_samples`` subsamples the rest.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoft.core.config import Config, DataConfig
from autoft.core.errors import InputError
from trainables.api import Reporter
from trainables.hparams import HParams, parse_hparams
from trainables.loop import Job, Runtime, peak_memory, run
from trainables.splits import HOLDOUT_FRACTION, R, split_holdout, subsample
from trainables.tasks import make_task
from trainables.text import sequences, tables, tokens
from trainables.text.predict import predict as predict  # the saved model on new data

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class TextData:
    """What ``prepare`` hands every trial: the task, tokenised splits and the label names
    (classes, labels or tags; none for regression)."""

    model: str
    task: str
    label_names: list[str]
    pad_id: int
    train: tokens.Encoded
    eval: tokens.Encoded
    eval_source: str
    #: The most tokens the model takes in one input (what ``prepare`` truncated at).
    model_max_length: int


def prepare(config: Config) -> TextData:
    """Read, check and tokenise the train and eval data once per search."""
    model, data = _inputs(config)
    model_config, tokenizer = tokens.load_tokenizer(model)
    limit = tokens.max_input_length(model_config, tokenizer)
    read = read_data(config)
    return TextData(model=model, task=read.task, label_names=read.names,
                    pad_id=tokenizer.pad_token_id or 0,
                    train=_encode(tokenizer, *read.train, limit, str(data.train)),
                    eval=_encode(tokenizer, *read.eval, limit, read.eval_source),
                    eval_source=read.eval_source, model_max_length=limit)


def _inputs(config: Config) -> tuple[str, DataConfig]:
    """The config's model and data, which the text trainable cannot do without."""
    if config.data is None or not config.model:
        raise InputError(f"{config.source or 'config'}: trainable text needs model and data")
    return config.model, config.data


def check_model(config: Config) -> None:
    """Refuse a model that ``prepare`` would refuse (its config and tokenizer must load)."""
    tokens.load_tokenizer(_inputs(config)[0])


def check_data(config: Config) -> None:
    """Refuse data that ``prepare`` would refuse, without tokenising it."""
    read_data(config)


@dataclass(frozen=True)
class ReadData:
    """The task's splits as read and labelled, before tokenising: the rows (tables or tagged
    sentences) with the task's labels, and the label names."""

    task: str
    names: list[str]
    train: tuple[Any, Any]
    eval: tuple[Any, Any]
    eval_source: str


def read_data(config: Config) -> ReadData:
    """Read and label the train and eval data: tables for classes, scores and label sets,
    tagged sentences for tags."""
    data, task = _inputs(config)[1], config.task or "classification"
    read = _read_tagged if task == "token_classification" else _read_labelled
    return read(data, task, config.search.seed)


def _encode(tokenizer, rows: Any, labels: Any, limit: int, where: str) -> tokens.Encoded:
    """Tokenised rows: texts (or pairs) with their labels, or words with their tag ids (the
    words past the model's limit counted in a warning)."""
    if not isinstance(rows, sequences.TaggedSentences):
        return tokens.encode(tokenizer, rows.texts, rows.pairs, labels, limit)
    encoded, dropped = tokens.encode_words(tokenizer, rows.words, labels, limit)
    if dropped:
        logger.warning("%s: %d word(s) past the model's %d tokens are dropped (not trained "
                       "on or scored)", where, dropped, limit)
    return encoded


def _splits(data: DataConfig, seed: int,
            read: Callable[[Path, str], R]) -> tuple[R, R, str]:
    """The train and eval rows ``read`` gives: ``data.eval``, else a seeded holdout of train;
    each subsampled to its limit with the search seed."""
    train = read(data.train, "data.train")
    if data.eval is not None:
        evaluation, eval_source = read(data.eval, "data.eval"), str(data.eval)
    else:
        train, evaluation = split_holdout(train, seed)
        eval_source = f"a seeded {HOLDOUT_FRACTION:.0%} of {data.train}"
        logger.warning("data.eval is not set: evaluating on %s (%d rows)", eval_source,
                       len(evaluation))
    return (subsample(train, data.max_train_samples, seed),
            subsample(evaluation, data.max_eval_samples, seed), eval_source)


def _read_labelled(data: DataConfig, task: str, seed: int) -> ReadData:
    """Sentences (or pairs) with a class, a score or a set of labels."""
    declared: list[list[str] | None] = []

    def read(path: Path, key: str) -> tables.LabelledTexts:
        rows, names = tables.read_split(data, path, key)
        declared.append(names)
        return rows

    train, evaluation, eval_source = _splits(data, seed, read)
    where = {"train": str(data.train), "eval": eval_source}
    if task == "regression":
        names: list[str] = []
        labels = {"train": tables.encode_scores(train, where["train"]),
                  "eval": tables.encode_scores(evaluation, where["eval"])}
    elif task == "multi_label":
        from_file = _names_file(data)
        names = tables.multi_label_names(train.labels, from_file or declared[0])
        labels = {split: tables.encode_multi_labels(rows, names, where[split],
                                                    indices=from_file is not None)
                  for split, rows in (("train", train), ("eval", evaluation))}
    else:
        names = tables.label_names(train.labels, declared[0])
        if len(names) < 2:
            raise InputError(f"{data.train}: the training data has only one label "
                             f"({names[0]!r}); a classifier needs at least 2")
        labels = {"train": tables.encode_labels(train.labels, names, where["train"]),
                  "eval": tables.encode_labels(evaluation.labels, names, where["eval"])}
    return ReadData(task, names, (train, labels["train"]), (evaluation, labels["eval"]),
                    eval_source)


def _names_file(data: DataConfig) -> list[str] | None:
    """The label names of ``data.label_names``, one a line (None when not given)."""
    if data.label_names is None:
        return None
    try:
        text = data.label_names.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{data.label_names}: data.label_names: not UTF-8 text ({exc.reason} "
                         f"at byte {exc.start})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{data.label_names}: data.label_names: the file names no label")
    return names


def _read_tagged(data: DataConfig, task: str, seed: int) -> ReadData:
    """Sentences with a tag per word (the tag ids, in the order of :func:`tag_names`)."""
    train, evaluation, eval_source = _splits(
        data, seed, lambda path, key: sequences.read_sentences(data, path, key))
    names = sequences.tag_names(train.tags)
    ids = {name: index for index, name in enumerate(names)}
    tag_ids = []
    for rows, where in ((train, str(data.train)), (evaluation, eval_source)):
        unknown = sorted({tag for sentence in rows.tags for tag in sentence} - set(ids))
        if unknown:
            raise InputError(f"{where}: tag(s) {', '.join(map(repr, unknown[:5]))} never occur "
                             f"in the training data (tags: {', '.join(names)})")
        tag_ids.append([[ids[tag] for tag in sentence] for sentence in rows.tags])
    return ReadData(task, names, (train, tag_ids[0]), (evaluation, tag_ids[1]), eval_source)


def infer_task(data: DataConfig) -> tuple[str, str]:
    """The task the data asks for, and why (``validate`` and ``suggest`` say it): tags per
    token, several labels per example, numeric scores, else classes."""
    fmt = data.resolved_format
    if fmt == "conll":
        return "token_classification", "the data is a CoNLL file (a tag per token)"
    if isinstance(data.label_column, list):
        return "multi_label", f"data.label_column names {len(data.label_column)} label columns"
    if data.label_names is not None:
        return "multi_label", "data.label_names gives the names of several labels"
    if fmt == "jsonl" and _first_record_has_lists(data):
        return "token_classification", "the records hold lists of tokens and tags"
    with warnings.catch_warnings():  # prepare warns of skipped lines; once is enough
        warnings.simplefilter("ignore")
        labels = tables.read_split(data, data.train)[0].labels
    several = next((label for label in labels if "," in label), None)
    if several is not None:
        return "multi_label", f"labels such as {several!r} name several labels"
    try:
        scores = [float(label) for label in labels]
    except ValueError:
        return "classification", f"the labels are {len(set(labels))} classes"
    fraction = next((label for label, score in zip(labels, scores, strict=True)
                     if not score.is_integer()), None)
    if fraction is not None:
        return "regression", f"the labels are numbers with fractions (such as {fraction})"
    return "classification", f"the labels are {len(set(labels))} classes"


def _first_record_has_lists(data: DataConfig) -> bool:
    with data.train.open(encoding="utf-8-sig") as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and any(isinstance(v, list) for v in record.values())


def load_model(prepared: TextData):
    """The pretrained body with a new head for ``prepared``'s task and labels."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    task = make_task(prepared.task, prepared.label_names)
    names = prepared.label_names or ["score"]
    kinds = {"regression": "regression", "multi_label": "multi_label_classification",
             "classification": "single_label_classification"}
    auto = (AutoModelForTokenClassification if prepared.task == "token_classification"
            else AutoModelForSequenceClassification)
    extra = {"problem_type": kinds[prepared.task]} if prepared.task in kinds else {}
    return auto.from_pretrained(
        prepared.model, num_labels=task.num_outputs, id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)}, trust_remote_code=False, **extra)


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


def _start_at(model, bias: np.ndarray) -> None:
    """Set the output layer's bias (the last linear layer: the head's) to ``bias``."""
    import torch

    output = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    if output.bias is None or output.bias.shape != (len(bias),):
        raise RuntimeError(f"the model's last linear layer ({output}) is not a head of "
                           f"{len(bias)} outputs with a bias")
    with torch.no_grad():
        output.bias.copy_(torch.from_numpy(bias))


def make_job(prepared: TextData, hp: HParams) -> Callable[[Runtime], Job]:
    """The loop's :class:`~trainables.loop.Job` for ``prepared`` under ``hp`` (built once the
    seed is set)."""
    cut = int((prepared.train.lengths > hp.max_length).sum())
    if cut:
        logger.info("max_length %d cuts %d of %d training examples", hp.max_length, cut,
                    len(prepared.train))
    train = tokens.truncate(prepared.train, hp.max_length)
    evaluation = tokens.truncate(prepared.eval, hp.max_length)
    task = make_task(prepared.task, prepared.label_names, hp.threshold)

    prior = task.prior(train.labels)

    def build(runtime: Runtime) -> Job:
        workers = runtime.workers

        def train_batches(epoch: int):
            rng = np.random.default_rng([hp.seed, epoch])
            for indices in tokens.length_grouped_batches(train.lengths, hp.batch_size, rng):
                rows = workers.rows(indices)
                yield tokens.collate(train, rows, prepared.pad_id) if len(rows) else None

        model = load_model(prepared)
        if prior is not None:
            _start_at(model, prior)
        return Job(model=model, train_batches=train_batches,
                   steps_per_epoch=-(-len(train) // hp.batch_size),
                   eval_batches=lambda: tokens.sorted_batches(evaluation, tokens.EVAL_BATCH_SIZE,
                                                              prepared.pad_id, workers),
                   forward=lambda model, inputs: model(**inputs).logits, task=task)

    return build


def fit(config: Config, prepared: TextData, hparams: dict[str, Any],
        reporter: Reporter) -> dict[str, float]:
    """One fine-tune of the text model with ``hparams``."""
    hp = parse_hparams(hparams, "text")
    return run(hp, reporter, make_job(prepared, hp), threads=config.resources.cpu)


def measure_memory(config: Config, prepared: TextData, hparams: dict[str, Any]) -> int:
    """Peak GPU bytes of a trial with ``hparams`` over its first steps (0 without CUDA)."""
    hp = parse_hparams(hparams, "text")
    return peak_memory(hp, make_job(prepared, hp))

"""A saved text model on new data (``autoft predict``), with evaluation's preprocessing.

The file is read in the format and columns the model was trained with (its ``autoft.yaml``), its
label columns ignored when present; every example is tokenised, cut at the trained ``max_length``
exactly as evaluation cut it (:func:`trainables.text.tokens.truncate`) and run in the file's
order. The task turns the outputs into names (:meth:`trainables.tasks.Task.predict`): a class
with its probabilities, a score, the labels at the trained ``threshold``, or a tag per word.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoft.core.config import Config
from autoft.core.errors import InputError
from trainables.api import Predictions
from trainables.hparams import parse_hparams
from trainables.tasks import make_task
from trainables.text import sequences, tables, tokens

logger = logging.getLogger(__name__)

#: How the data to predict is named in messages.
KEY = "data to predict"


def predict(config: Config, model_dir: Path, path: Path) -> Predictions:
    """The predictions of the model in ``model_dir`` (trained by ``config``) on ``path``."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    if config.data is None or config.task is None:
        raise InputError(f"{model_dir}: its autoft.yaml has no data settings or task to read "
                         "new data with")
    hp = parse_hparams(config.fixed, "text")
    data = config.data.model_copy(update={"train": path, "eval": None})
    tagging = config.task == "token_classification"
    if tagging:  # the data first: a bad file is refused before any model loads
        sentences = sequences.read_sentences(data, path, KEY, labelled=False)
        inputs: list[dict[str, Any]] = [{"tokens": words} for words in sentences.words]
    else:
        rows = tables.read_split(data, path, KEY, labelled=False)[0]
        inputs = [{"text": text} for text in rows.texts] if rows.pairs is None else [
            {"text": text, "text_pair": pair} for text, pair in zip(rows.texts, rows.pairs,
                                                                   strict=True)]
    model_config, tokenizer = tokens.load_tokenizer(model_dir)
    auto = AutoModelForTokenClassification if tagging else AutoModelForSequenceClassification
    try:
        model = auto.from_pretrained(model_dir, trust_remote_code=False).eval()
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{model_dir}: not a transformers model folder ({reason})") from None
    names = [] if config.task == "regression" else [
        model.config.id2label[i] for i in range(model.config.num_labels)]
    task = make_task(config.task, names, hp.threshold)
    limit = tokens.max_input_length(model_config, tokenizer)
    if tagging:
        encoded, dropped = tokens.encode_words(
            tokenizer, sentences.words, [[0] * len(words) for words in sentences.words], limit)
        if dropped:
            logger.warning("%s: %d word(s) past the model's %d tokens get no tag", path, dropped,
                           limit)
    else:
        encoded = tokens.encode(tokenizer, rows.texts, rows.pairs, np.zeros(len(rows)), limit)
    encoded = tokens.truncate(encoded, hp.max_length)
    return Predictions(len(inputs), _rows(model, task, encoded, tokenizer.pad_token_id or 0,
                                          inputs))


def _rows(model: torch.nn.Module, task: Any, encoded: tokens.Encoded, pad_id: int,
          inputs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    with torch.inference_mode():
        for start in range(0, len(inputs), tokens.EVAL_BATCH_SIZE):
            batch = np.arange(start, min(start + tokens.EVAL_BATCH_SIZE, len(inputs)))
            features, labels = tokens.collate(encoded, batch, pad_id)
            logits = model(**features).logits.float()
            for index, output in zip(batch, task.predict(logits, labels), strict=True):
                yield {**inputs[index], **output}

"""``autoft predict MODEL DATA``: a model folder that ``autoft train`` wrote, run on new data.

The folder's ``autoft.yaml`` (:data:`autoft.tuning.train.MODEL_CONFIG`) says which trainable
reads the data and how (format, columns, task, ``max_length``, ``threshold``); the trainable's
``predict`` does the rest with evaluation's preprocessing. The predictions go to a CSV or JSONL
file (by its suffix), one row per example in the data's order, with a progress bar on standard
error. CSV flattens what JSONL nests: each probability is a column ``p:<name>``, a list of tags
or tokens is joined with spaces, a set of labels with commas. The file is written whole or not
at all.

Example::

    done = predict(Path("autoft_results/stsb-minilm-model"), Path("new_pairs.tsv"),
                   Path("scores.csv"))
    done.output, done.count
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoft.core.config import load_config
from autoft.core.errors import InputError
from autoft.core.files import write_text_atomic
from autoft.tuning.train import MODEL_CONFIG
from trainables import load_trainable

#: Where predictions go when no output is named.
DEFAULT_OUTPUT = Path("predictions.csv")
#: What joins the items of a list in a CSV cell, by key (others: spaces).
CSV_JOINS = {"labels": ","}


@dataclass(frozen=True)
class PredictResult:
    """The file written and how many examples it holds."""

    output: Path
    count: int


def predict(model_dir: Path, data: Path, output: Path | None = None,
            progress: bool = True) -> PredictResult:
    """Run the model in ``model_dir`` on ``data`` and write the predictions to ``output``
    (``.csv`` or ``.jsonl``; default :data:`DEFAULT_OUTPUT`)."""
    output = Path(output or DEFAULT_OUTPUT)
    if output.suffix.lower() not in (".csv", ".jsonl"):
        raise InputError(f"{output}: -o: the predictions file must end in .csv or .jsonl")
    made_by = Path(model_dir) / MODEL_CONFIG
    if not made_by.is_file():
        raise InputError(f"{model_dir}: not a model folder written by autoft train (it has no "
                         f"{MODEL_CONFIG})")
    config = load_config(made_by)
    trainable = load_trainable(config.trainable)
    if not callable(getattr(trainable, "predict", None)):
        raise InputError(f"{model_dir}: trainable {config.trainable} cannot predict")
    predictions = trainable.predict(config, Path(model_dir), Path(data))
    rows = list(_with_progress(predictions.rows, predictions.total, progress))
    text = _jsonl(rows) if output.suffix.lower() == ".jsonl" else _csv(rows)
    return PredictResult(write_text_atomic(output, text), len(rows))


def _with_progress(rows: Iterable[dict[str, Any]], total: int,
                   shown: bool) -> Iterable[dict[str, Any]]:
    if not shown:
        return rows
    from tqdm.auto import tqdm

    return tqdm(rows, total=total, unit="example", desc="predict", leave=False)


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _csv(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV, nested values flattened (see the module doc).

    >>> print(_csv([{"text": "a b", "label": "pos", "probabilities": {"neg": 0.1, "pos": 0.9}}]))
    text,label,p:neg,p:pos
    a b,pos,0.1,0.9
    <BLANKLINE>
    """
    flat = [_flat(row) for row in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]) if flat else [],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"p:{name}": p for name, p in value.items()})
        elif isinstance(value, list):
            flat[key] = CSV_JOINS.get(key, " ").join(map(str, value))
        else:
            flat[key] = value
    return flat

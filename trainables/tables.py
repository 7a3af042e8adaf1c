"""Labelled text tables: csv, tsv, jsonl or a ``datasets`` folder, read into plain lists.

Columns are named by index or by header name (``data.text_column``, ``data.text_pair_column``,
``data.label_column``). **Header rule** for csv/tsv: if any of these columns is given by name, the
first row is a header; if all are given by index (the default ``0`` / ``1``), the file has no
header (CoLA's ``sentence<TAB>label`` and SST-2's ``label<TAB>sentence`` are read by index). In
jsonl and ``datasets`` folders columns are the record keys / features: a name picks a key, an
index its position in the first record's key order.

Labels are kept as strings; :func:`label_names` orders them (numerically when every label is an
integer, so ``"0"``/``"1"`` map to ids 0/1) and :func:`encode_labels` maps them to ids, refusing
a label the training set never had. Without an eval file a seeded 10% of train is held out
(:func:`split_holdout`); ``max_train_samples``/``max_eval_samples`` subsample with the search seed
(:func:`subsample`). Every problem is an :class:`~autoft.core.errors.InputError` naming file
and column.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from autoft.core.config import Column, DataConfig
from autoft.core.errors import InputError
from trainables.splits import holdout_positions, subsample_positions

#: Share of the training rows held out for evaluation when no eval file is given.


@dataclass(frozen=True)
class LabelledTexts:
    """Rows of one split: texts, optional second texts (pairs), string labels."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: Sequence[int]) -> LabelledTexts:
        """The rows at ``indices``, in that order."""
        return LabelledTexts([self.texts[i] for i in indices],
                             None if self.pairs is None else [self.pairs[i] for i in indices],
                             [self.labels[i] for i in indices])


def read_split(data: DataConfig, path: Path) -> tuple[LabelledTexts, list[str] | None]:
    """Read one file/folder of ``data``'s format; also the label order a ``datasets``
    ClassLabel feature declares (else None)."""
    if not path.exists():
        raise InputError(f"{path}: data file not found")
    fmt = data.resolved_format
    columns = {"text_column": data.text_column, "label_column": data.label_column}
    if data.text_pair_column is not None:
        columns["text_pair_column"] = data.text_pair_column
    declared_names = None
    if fmt in ("csv", "tsv"):
        frame = _read_delimited(path, fmt, has_header=any(isinstance(c, str)
                                                          for c in columns.values()))
    elif fmt == "jsonl":
        frame = _read_jsonl(path)
    elif fmt == "hf_disk":
        frame, declared_names = _read_hf_disk(path, data.label_column)
    else:
        raise InputError(f"{path}: format {fmt!r} is not a text table (csv, tsv, jsonl, hf_disk)")
    if frame.empty:
        raise InputError(f"{path}: the dataset is empty")
    picked = {key: _column(frame, column, key, path) for key, column in columns.items()}
    labels = picked["label_column"].astype(str).tolist()
    if any(label == "" for label in labels):
        row = labels.index("")
        raise InputError(f"{path}: row {row + 1}: empty label in data.label_column")
    pairs = picked.get("text_pair_column")
    return LabelledTexts(picked["text_column"].astype(str).tolist(),
                         None if pairs is None else pairs.astype(str).tolist(),
                         labels), declared_names


def _read_delimited(path: Path, fmt: str, has_header: bool) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: expected a {fmt} file, found a folder")
    tsv = fmt == "tsv"
    try:
        return pd.read_csv(path, sep="\t" if tsv else ",", header=0 if has_header else None,
                           dtype=str, keep_default_na=False, encoding="utf-8",
                           quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as {fmt}: {str(exc).strip()}") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    try:
        return pd.read_json(path, lines=True, dtype=False)
    except ValueError as exc:
        if path.is_file() and not path.read_text(encoding="utf-8").strip():
            return pd.DataFrame()
        raise InputError(f"{path}: cannot read as jsonl: {exc}") from None


def _read_hf_disk(path: Path, label_column: Column) -> tuple[pd.DataFrame, list[str] | None]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"{path}: not a datasets folder saved with save_to_disk: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise InputError(f"{path}: a DatasetDict without a 'train' split "
                             f"(splits: {', '.join(loaded)})")
        loaded = loaded["train"]
    frame = loaded.to_pandas()
    names = list(loaded.features)
    key = label_column if isinstance(label_column, str) else (
        names[label_column] if 0 <= label_column < len(names) else None)
    feature = loaded.features.get(key) if key is not None else None
    if isinstance(feature, datasets.ClassLabel):
        frame[key] = [feature.int2str(int(value)) for value in frame[key]]
        return frame, list(feature.names)
    return frame, None


def _column(frame: pd.DataFrame, column: Column, key: str, path: Path) -> pd.Series:
    if isinstance(column, str):
        if column not in frame.columns:
            raise InputError(f"{path}: data.{key}: no column named {column!r} in the header "
                             f"row ({', '.join(map(str, frame.columns))}); a file without a "
                             "header needs every column given by index")
        return frame[column]
    if not 0 <= column < frame.shape[1]:
        raise InputError(f"{path}: data.{key}: column index {column} out of range "
                         f"(the file has {frame.shape[1]} columns)")
    return frame.iloc[:, column]


def label_names(labels: Sequence[str], declared: list[str] | None = None) -> list[str]:
    """The class names in id order: ``declared`` if given, else numeric or sorted order."""
    if declared is not None:
        return declared
    unique = set(labels)
    try:
        return sorted(unique, key=int)
    except ValueError:
        return sorted(unique)


def encode_labels(labels: Sequence[str], names: list[str], where: str) -> np.ndarray:
    """Map string labels to ids; a label outside ``names`` (the training classes) is an error."""
    ids = {name: index for index, name in enumerate(names)}
    unknown = sorted(set(labels) - set(ids))
    if unknown:
        raise InputError(f"{where}: label(s) {', '.join(map(repr, unknown[:5]))} never occur in "
                         f"the training data (classes: {', '.join(names)})")
    return np.array([ids[label] for label in labels], dtype=np.int64)


def subsample(rows: LabelledTexts, limit: int | None, seed: int) -> LabelledTexts:
    """At most ``limit`` rows, drawn without replacement with ``seed`` (order kept)."""
    return rows.take(subsample_positions(len(rows), limit, seed))


def split_holdout(rows: LabelledTexts, seed: int) -> tuple[LabelledTexts, LabelledTexts]:
    """A seeded ``HOLDOUT_FRACTION`` of ``rows`` as eval (at least one row), the rest as train."""
    train, evaluation = holdout_positions(len(rows), seed)
    return rows.take(train), rows.take(evaluation)

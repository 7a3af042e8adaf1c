"""Labelled text tables: csv, tsv, jsonl or a ``datasets`` folder, read into plain lists.

Columns are named by index or by header name (``data.text_column``, ``data.text_pair_column``,
``data.label_column``). **Header rule** for csv/tsv: if any of these columns is given by name, the
first row is a header; if all are given by index (the default ``0`` / ``1``), the file has no
header (CoLA's ``sentence<TAB>label`` and SST-2's ``label<TAB>sentence`` are read by index). In
jsonl and ``datasets`` folders columns are the record keys / features: a name picks a key, an
index its position in the first record's key order.

**Malformed lines** are skipped and counted, never dropped silently: a csv/tsv line whose number
of fields differs from the header's (without a header: from the most common count), a csv line
that breaks the quoting rules, a jsonl line that is not a JSON object or lacks (or has a null or
nested value for) a key a column names. One ``UserWarning`` per file says how many and where the
first one is::

    data.train: skipped 3 malformed line(s) of /data/train.tsv (first: line 7: 3 fields where 2
    are expected)

Blank lines are not rows. A file with no row left (empty, a header alone, every line malformed),
a quoted csv field that never closes, a missing column and an empty label are an
:class:`~autoft.core.errors.InputError` naming the file and the key.

Labels are kept as strings; :func:`label_names` orders them (numerically when every label is an
integer, so ``"0"``/``"1"`` map to ids 0/1) and :func:`encode_labels` maps them to ids, refusing
a label the training set never had. A regression's labels are numbers (:func:`encode_scores`);
a multi-label example's labels are one comma-separated cell of names or indices (optionally
named by ``data.label_names``, a file of one name a line) or several 0/1 columns
(``label_column: [a, b, c]``), made a 0/1 matrix by :func:`encode_multi_labels`.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoft.core.config import Column, DataConfig
from autoft.core.errors import InputError


@dataclass(frozen=True)
class LabelledTexts:
    """Rows of one split: texts, optional second texts (pairs), string labels, and the line
    (or row) each came from, for messages (None: 1, 2, 3, ...)."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[str]
    lines: list[int] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def line(self, index: int) -> int:
        """The line (or row) of row ``index``."""
        return self.lines[index] if self.lines is not None else index + 1

    def take(self, indices: Sequence[int]) -> LabelledTexts:
        """The rows at ``indices``, in that order."""
        return LabelledTexts([self.texts[i] for i in indices],
                             None if self.pairs is None else [self.pairs[i] for i in indices],
                             [self.labels[i] for i in indices],
                             [self.line(i) for i in indices])


@dataclass(frozen=True)
class _Table:
    """The well-formed rows of a file (index: their 1-based line or row numbers), the malformed
    lines skipped (line number, why) and whether the file had a header row."""

    frame: pd.DataFrame
    malformed: list[tuple[int, str]]
    header: bool = False
    unit: str = "line"


def split_key(data: DataConfig, path: Path) -> str:
    """The config key that names ``path``: ``data.train``, ``data.eval`` (else ``data``)."""
    if Path(path) == data.train:
        return "data.train"
    return "data.eval" if data.eval is not None and Path(path) == data.eval else "data"


def read_split(data: DataConfig, path: Path, key: str | None = None,
               labelled: bool = True) -> tuple[LabelledTexts, list[str] | None]:
    """Read one file/folder of ``data``'s format as the split ``key`` (``data.train`` or
    ``data.eval``; default: the one ``path`` is); also the label order a ``datasets``
    ClassLabel feature declares (else None). Malformed lines are skipped with one warning.
    Not ``labelled`` (data to predict): the label columns are not read, and no labels come
    back."""
    key = key or split_key(data, path)
    if not path.exists():
        raise InputError(f"{path}: {key}: data file not found")
    fmt = data.resolved_format
    label_columns = data.label_column if isinstance(data.label_column, list) else None
    columns: dict[str, Column] = {"text_column": data.text_column}
    if labelled and label_columns is None:
        columns["label_column"] = data.label_column  # type: ignore[assignment]
    elif labelled:
        columns.update({f"label_column[{i}]": c for i, c in enumerate(label_columns)})
    if data.text_pair_column is not None:
        columns["text_pair_column"] = data.text_pair_column
    declared_names = None
    if fmt in ("csv", "tsv"):
        table = _read_delimited(path, fmt, key, has_header=any(isinstance(c, str)
                                                               for c in columns.values()))
    elif fmt == "jsonl":
        table = _read_jsonl(path, key, list(columns.values()))
    elif fmt == "hf_disk" and label_columns is None:
        split = data.train_split if key == "data.train" else data.eval_split
        table, declared_names = _read_hf_disk(path, key, data.label_column, split)
    else:
        raise InputError(f"{path}: {key}: format {fmt!r} is not a text table "
                         "(csv, tsv, jsonl, hf_disk)")
    if table.frame.empty:
        raise InputError(_no_rows(path, key, table))
    picked = {name: _column(table.frame, column, name, path, fmt)
              for name, column in columns.items()}
    if label_columns is not None and labelled:
        declared_names = [str(picked[f"label_column[{i}]"].name)
                          for i in range(len(label_columns))]
        picked["label_column"] = _joined_flags(
            [picked[f"label_column[{i}]"] for i in range(len(label_columns))], path, table.unit)
    labels = picked["label_column"].astype(str).tolist() if labelled else []
    if "" in labels:
        where = table.frame.index[labels.index("")]
        raise InputError(f"{path}: data.label_column: {table.unit} {where}: empty label")
    if table.malformed:
        line, why = table.malformed[0]
        warnings.warn(f"{key}: skipped {len(table.malformed)} malformed line(s) of {path} "
                      f"(first: line {line}: {why})", UserWarning, stacklevel=2)
    pairs = picked.get("text_pair_column")
    return LabelledTexts(picked["text_column"].astype(str).tolist(),
                         None if pairs is None else pairs.astype(str).tolist(),
                         labels, [int(line) for line in table.frame.index]), declared_names


#: A multi-label example without any label, as one cell (an empty cell is a missing label).
MULTI_NONE = "-"
#: The cells of a 0/1 label column that mean "has the label" and "has not".
FLAGS = {"1": True, "1.0": True, "true": True, "0": False, "0.0": False, "false": False, "": False}


def _joined_flags(columns: list[pd.Series], path: Path, unit: str) -> pd.Series:
    """Several 0/1 label columns as one column of comma-separated column names."""
    names = [str(column.name) for column in columns]
    rows = []
    for line, values in zip(columns[0].index, zip(*columns, strict=True), strict=True):
        flags = []
        for name, value in zip(names, values, strict=True):
            flag = FLAGS.get(str(value).strip().lower())
            if flag is None:
                raise InputError(f"{path}: data.label_column: {unit} {line}: {value!r} in label "
                                 f"column {name!r} is not 0 or 1")
            flags.append(flag)
        joined = ",".join(name for name, flag in zip(names, flags, strict=True) if flag)
        rows.append(joined or MULTI_NONE)
    return pd.Series(rows, index=columns[0].index)


def _no_rows(path: Path, key: str, table: _Table) -> str:
    """Why a file gave no row, as the message of its :class:`InputError`."""
    if table.malformed:
        line, why = table.malformed[0]
        return (f"{path}: {key}: no well-formed row: all {len(table.malformed)} line(s) are "
                f"malformed (first: line {line}: {why})")
    if table.header:
        return f"{path}: {key}: no data rows, only the header row"
    return f"{path}: {key}: the dataset is empty"


def _not_a_file(path: Path, key: str, fmt: str) -> None:
    if not path.is_file():
        raise InputError(f"{path}: {key}: expected a {fmt} file, found a folder")


def _not_utf8(path: Path, key: str, fmt: str, exc: UnicodeDecodeError) -> InputError:
    return InputError(f"{path}: {key}: cannot read as {fmt}: not UTF-8 text "
                      f"({exc.reason} at byte {exc.start})")


def _read_delimited(path: Path, fmt: str, key: str, has_header: bool) -> _Table:
    """The rows of a csv/tsv file; rows whose field count is off are malformed.

    tsv is read without quoting (a ``"`` is text, as in GLUE's files); csv with the usual
    ``"``-quoting, where a field may span lines.
    """
    _not_a_file(path, key, fmt)
    tsv = fmt == "tsv"
    rows: list[tuple[int, list[str]]] = []
    malformed: list[tuple[int, str]] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t" if tsv else ",",
                                quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
                                strict=True)
            start = 1
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    if "unexpected end of data" in str(exc):
                        raise InputError(f"{path}: {key}: line {start}: a quoted field is never "
                                         "closed (it runs to the end of the file)") from None
                    malformed.append((start, f"bad quoting: {exc}"))
                else:
                    if fields:  # a blank line is no row
                        rows.append((start, fields))
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, key, fmt, exc) from None
    header: list[str] | None = None
    if has_header and rows:
        header = rows.pop(0)[1]
        width = len(header)
    else:
        width = Counter(len(fields) for _, fields in rows).most_common(1)[0][0] if rows else 0
    malformed += [(line, f"{len(fields)} field(s) where {width} are expected")
                  for line, fields in rows if len(fields) != width]
    malformed.sort()
    good = [(line, fields) for line, fields in rows if len(fields) == width]
    frame = pd.DataFrame([fields for _, fields in good], columns=header,
                         index=[line for line, _ in good], dtype=str)
    return _Table(frame, malformed, header=header is not None)


def _cell(value: Any) -> str | None:
    """A JSON value as table text; None for null and nested values (no text or label)."""
    if value is None or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else str(value)


def json_lines(path: Path, key: str) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    """Each non-blank line of a JSONL file: its number, its object, and what is wrong with it
    (not JSON, not an object) or None; a file that is not UTF-8 is an :class:`InputError`."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, {}, f"not JSON ({exc.msg}, column {exc.colno})"
                    continue
                yield (number, record, None) if isinstance(record, dict) else (
                    number, {}, f"a JSON {type(record).__name__}, not an object")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, key, "jsonl", exc) from None


def _read_jsonl(path: Path, key: str, columns: list[Column]) -> _Table:
    """The records of a jsonl file; a line that is not a JSON object, or lacks a key that a
    column names (or holds null or a nested value there), is malformed."""
    _not_a_file(path, key, "jsonl")
    records: list[tuple[int, dict[str, Any]]] = []
    malformed: list[tuple[int, str]] = []
    for number, record, problem in json_lines(path, key):
        if problem is None:
            records.append((number, record))
        else:
            malformed.append((number, problem))
    keys = list(dict.fromkeys(name for _, record in records for name in record))
    # The keys the columns name; a key no record has is the column check's error, not a row's.
    used = {column if isinstance(column, str) else keys[column] for column in columns
            if (column in keys if isinstance(column, str) else 0 <= column < len(keys))}
    good: list[tuple[int, dict[str, str | None]]] = []
    for number, record in records:
        cells = {name: _cell(value) for name, value in record.items()}
        lacking = sorted(name for name in used if cells.get(name) is None)
        if lacking:
            what = "no" if lacking[0] not in record else "a null or nested value for"
            malformed.append((number, f"{what} key {lacking[0]!r}"))
        else:
            good.append((number, cells))
    malformed.sort()
    frame = pd.DataFrame([cells for _, cells in good], columns=keys if good else None,
                         index=[number for number, _ in good], dtype=object)
    return _Table(frame, malformed)


#: The splits of a ``DatasetDict`` that ``data.eval`` reads without ``data.eval_split``, in order.
EVAL_SPLITS = ("validation", "test")


def _read_hf_disk(path: Path, key: str, label_column: Column,
                  split: str | None) -> tuple[_Table, list[str] | None]:
    """A ``save_to_disk`` folder; of a ``DatasetDict`` the ``split`` named (``data.train``:
    ``train``; ``data.eval``: :data:`EVAL_SPLITS`, never its training split silently)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"{path}: {key}: not a datasets folder saved with save_to_disk: "
                         f"{exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        setting = "train_split" if key == "data.train" else "eval_split"
        chosen = split or next((s for s in EVAL_SPLITS if s in loaded), None)
        if chosen not in loaded:
            raise InputError(f"{path}: {key}: a DatasetDict without "
                             f"{f'a {chosen!r} split' if chosen else 'a validation or test split'}"
                             f" (splits: {', '.join(loaded)}); name one with data.{setting}")
        loaded = loaded[chosen]
    frame = loaded.to_pandas()
    frame.index = range(1, len(frame) + 1)
    names = list(loaded.features)
    label = label_column if isinstance(label_column, str) else (
        names[label_column] if 0 <= label_column < len(names) else None)
    feature = loaded.features.get(label) if label is not None else None
    if isinstance(feature, datasets.ClassLabel):
        frame[label] = [feature.int2str(int(value)) for value in frame[label]]
        return _Table(frame, [], unit="row"), list(feature.names)
    return _Table(frame, [], unit="row"), None


def _column(frame: pd.DataFrame, column: Column, key: str, path: Path, fmt: str) -> pd.Series:
    if isinstance(column, str):
        if column not in frame.columns:
            found = ", ".join(map(str, frame.columns))
            if fmt == "jsonl":
                raise InputError(f"{path}: data.{key}: no record has a key {column!r} "
                                 f"(keys: {found})")
            if fmt == "hf_disk":
                raise InputError(f"{path}: data.{key}: no feature named {column!r} "
                                 f"(features: {found})")
            raise InputError(f"{path}: data.{key}: no column named {column!r} in the header "
                             f"row ({found}); a file without a header needs every column "
                             "given by index")
        if list(frame.columns).count(column) > 1:
            raise InputError(f"{path}: data.{key}: the header names column {column!r} more "
                             "than once")
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


def encode_scores(rows: LabelledTexts, where: str) -> np.ndarray:
    """A regression's labels as numbers; a label that is not a finite number is an
    :class:`InputError` naming ``where``, the line and the value."""
    scores = np.empty(len(rows), dtype=np.float32)
    for i, label in enumerate(rows.labels):
        try:
            scores[i] = float(label)
        except ValueError:
            scores[i] = np.nan
        if not np.isfinite(scores[i]):
            raise InputError(f"{where}: line {rows.line(i)}: label {label!r} is not a number "
                             "(a regression needs numeric labels)")
    return scores


def split_multi(label: str) -> list[str]:
    """One multi-label cell as its labels: ``"3, 27"`` -> ``["3", "27"]``."""
    return [] if label == MULTI_NONE else [p.strip() for p in label.split(",") if p.strip()]


def multi_label_names(labels: Sequence[str], declared: list[str] | None) -> list[str]:
    """A multi-label task's label names: ``declared`` (a names file, the 0/1 columns), else
    every label the cells name, in :func:`label_names`' order."""
    if declared is not None:
        return declared
    return label_names([part for label in labels for part in split_multi(label)])


def encode_multi_labels(rows: LabelledTexts, names: list[str], where: str,
                        indices: bool = False) -> np.ndarray:
    """A 0/1 matrix, one column per name; with ``indices`` a cell may name a label by its index
    into ``names`` (a names file). An unknown label is an :class:`InputError` naming the line."""
    ids = {name: index for index, name in enumerate(names)}
    matrix = np.zeros((len(rows), len(names)), dtype=np.float32)
    for i, label in enumerate(rows.labels):
        for part in split_multi(label):
            index = ids.get(part)
            if index is None and indices and part.isdigit() and int(part) < len(names):
                index = int(part)
            if index is None:
                raise InputError(f"{where}: line {rows.line(i)}: label {part!r} is not one of "
                                 f"the {len(names)} labels ({', '.join(names[:8])}"
                                 f"{', ...' if len(names) > 8 else ''})")
            matrix[i, index] = 1.0
    return matrix

"""A config's ``data`` section from one path: where the splits are and how to read them.

``autoft suggest DATA`` takes what a user has at hand: a dataset folder with its splits
(``cola/train.tsv`` + ``cola/dev.tsv``, ``hymenoptera/train/`` + ``hymenoptera/val/``), one
training file, or one ImageFolder. :func:`locate` finds the training and evaluation splits,
the format (a ``.txt`` split of one token a line is CoNLL) and a ``labels.txt`` of label names
beside them; :func:`infer_columns` finds the text and label columns of a table whose columns
were not given: the label is the column with the fewest distinct values, the text the one with
the longest values, and a csv/tsv first row whose label cell never appears again is a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autoft.core.config import DataConfig
from autoft.core.errors import InputError

#: Names of a training split, file stem or folder.
TRAIN_NAMES = ("train",)
#: Names of an evaluation split, in order of preference.
EVAL_NAMES = ("dev", "val", "valid", "validation", "eval", "test")
#: Suffixes of text splits: tables, and CoNLL column files.
TABLE_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".conll", ".txt")
#: A file of label names (one a line) beside the splits: multi-label data names its labels so.
LABEL_NAMES_FILE = "labels.txt"
#: Rows read to infer the columns.
SNIFF_ROWS = 500


@dataclass(frozen=True)
class Located:
    """The splits found from ``DATA`` and the format they are read with."""

    train: Path
    eval: Path | None
    format: str
    label_names: Path | None = None

    @property
    def trainable(self) -> str:
        """``image`` for an ImageFolder, else ``text``."""
        return "image" if self.format == "imagefolder" else "text"


def _split(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first child of ``folder`` named like a split: a folder, or a table file."""
    for name in names:
        if (folder / name).is_dir():
            return folder / name
        for suffix in TABLE_SUFFIXES:
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None


def locate(data: Path, eval_path: Path | None = None, fmt: str | None = None) -> Located:
    """The training and evaluation splits of ``data`` and their format.

    ``data`` is a folder holding a ``train`` split (file or folder) and maybe an evaluation
    split (``dev``, ``val``, ...), or the training split itself; ``eval_path`` overrides the
    evaluation split found.
    """
    if not data.exists():
        raise InputError(f"DATA: {data} does not exist")
    if eval_path is not None and not eval_path.exists():
        raise InputError(f"--eval: {eval_path} does not exist")
    train = _split(data, TRAIN_NAMES) if data.is_dir() else None
    if train is None:
        train, found_eval = data, None
    else:
        found_eval = _split(data, EVAL_NAMES)
    evaluation = eval_path or found_eval
    if fmt is None and train.suffix == ".txt" and _looks_like_conll(train):
        fmt = "conll"
    resolved = DataConfig(train=train, eval=evaluation, format=fmt).resolved_format
    names = data / LABEL_NAMES_FILE if data.is_dir() else None
    return Located(train=train, eval=evaluation, format=resolved,
                   label_names=names if names is not None and names.is_file() else None)


def _looks_like_conll(path: Path) -> bool:
    """Whether a ``.txt`` file reads as CoNLL: its first lines hold whitespace-separated fields
    of one token each, in blocks separated by blank lines."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = [line.split() for _, line in zip(range(SNIFF_ROWS), handle, strict=False)]
    fields = [len(line) for line in lines if line]
    return bool(fields) and [] in lines and min(fields) >= 2 and len(set(fields)) == 1


def _sample(path: Path, fmt: str) -> pd.DataFrame:
    """The first :data:`SNIFF_ROWS` rows, every cell a string (csv/tsv: no header assumed)."""
    try:
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, nrows=SNIFF_ROWS, dtype=False).astype(str)
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", header=None, dtype=str,
                           nrows=SNIFF_ROWS, quoting=3 if fmt == "tsv" else 0,
                           on_bad_lines="skip", keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read it as {fmt}: {str(exc).splitlines()[0]}") from None


def infer_columns(located: Located) -> dict[str, Any]:
    """``text_column`` and ``label_column`` of a text table (by index, or by name where the
    file has a header or is jsonl).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.tsv").write_text("1\\ta fine film\\n0\\tdull\\n1\\tgreat fun\\n")
    >>> infer_columns(locate(folder))
    {'text_column': 1, 'label_column': 0}
    """
    if located.format not in ("csv", "tsv", "jsonl"):
        return {}
    frame = _sample(located.train, located.format)
    if frame.shape[1] < 2 or len(frame) < 2:
        raise InputError(f"{located.train}: cannot tell the text and label columns apart "
                         "(fewer than 2 columns or rows); give --text-column and --label-column")
    body = frame.iloc[1:]
    label = min(frame.columns, key=lambda c: (body[c].nunique(), body[c].str.len().mean()))
    text = max((c for c in frame.columns if c != label), key=lambda c: body[c].str.len().mean())
    if located.format == "jsonl":
        return {"text_column": str(text), "label_column": str(label)}
    header = frame.iloc[0]
    if header[label] not in set(body[label]):
        return {"text_column": header[text], "label_column": header[label]}
    return {"text_column": int(text), "label_column": int(label)}

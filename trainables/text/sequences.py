"""Tagged sentences for token classification: CoNLL column files and JSONL token lists.

**CoNLL** (``format: conll``, or a ``.conll`` / ``.txt`` file with ``task:
token_classification``): one token a line, its fields separated by whitespace, a blank line
between sentences; ``-DOCSTART-`` lines (document breaks) are skipped. The word is
``data.text_column`` (default 0) and the tag ``data.label_column`` (an index; the default ``1``
of a two-column file, else the last column: CoNLL-2003's ``TOKEN POS TAG`` reads its tags from
column 2).

**JSONL**: one sentence a line, ``{"tokens": [...], "tags": [...]}``: the keys are
``data.text_column`` and ``data.label_column`` when they are names, else ``tokens`` and ``tags``.

Bad input is an :class:`~autoft.core.errors.InputError` naming the file and the line: a token
line whose field count differs from the file's, a tag column out of range, a record whose lists
differ in length or hold something other than strings, a file without a sentence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoft.core.config import Column, DataConfig
from autoft.core.errors import InputError
from trainables.text import tables

#: A CoNLL line that marks a document break, not a token.
DOCSTART = "-DOCSTART-"
#: The keys of a JSONL record when the columns are not given by name.
JSONL_KEYS = ("tokens", "tags")


@dataclass(frozen=True)
class TaggedSentences:
    """Sentences as words with one tag each; ``lines``: where each sentence starts."""

    words: list[list[str]]
    tags: list[list[str]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.words)

    def take(self, indices: Sequence[int]) -> TaggedSentences:
        """The sentences at ``indices``, in that order."""
        return TaggedSentences([self.words[i] for i in indices], [self.tags[i] for i in indices],
                               [self.lines[i] for i in indices])


def read_sentences(data: DataConfig, path: Path, key: str,
                   labelled: bool = True) -> TaggedSentences:
    """The tagged sentences of one split (``key``: ``data.train`` or ``data.eval``); not
    ``labelled`` (sentences to tag): the words alone, each sentence's tags empty."""
    if not path.is_file():
        raise InputError(f"{path}: {key}: expected a CoNLL or JSONL file")
    fmt = data.resolved_format
    try:
        if fmt == "jsonl":
            sentences = _read_jsonl(path, key, data.text_column, data.label_column, labelled)
        else:
            sentences = _read_conll(path, key, data.text_column, data.label_column, labelled)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {key}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                         ) from None
    if not sentences.words:
        raise InputError(f"{path}: {key}: no sentence (the file is empty)")
    return sentences


def _read_conll(path: Path, key: str, text_column: Column,
                label_column: Column | list[Column], labelled: bool) -> TaggedSentences:
    blocks: list[list[tuple[int, list[str]]]] = [[]]
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                if blocks[-1]:
                    blocks.append([])
            elif fields[0] != DOCSTART:
                blocks[-1].append((number, fields))
    blocks = [block for block in blocks if block]
    widths = Counter(len(fields) for block in blocks for _, fields in block)
    if not widths:
        return TaggedSentences([], [], [])
    width = widths.most_common(1)[0][0]
    word = _conll_index(text_column, width, path, "text_column", default=0)
    tag = _conll_index(label_column, width, path, "label_column",
                       default=1 if width == 2 else width - 1) if labelled else None
    words, tags, lines = [], [], []
    for block in blocks:
        for number, fields in block:
            if len(fields) != width:
                raise InputError(f"{path}: {key}: line {number}: {len(fields)} field(s) where "
                                 f"{width} are expected (a token line is 'WORD ... TAG')")
        words.append([fields[word] for _, fields in block])
        tags.append([] if tag is None else [fields[tag] for _, fields in block])
        lines.append(block[0][0])
    return TaggedSentences(words, tags, lines)


def _conll_index(column: Column | list[Column], width: int, path: Path, name: str,
                 default: int) -> int:
    """A CoNLL column by index (negative from the end); the default ``1`` of a table's label
    column means ``default`` here."""
    if name == "label_column" and column == 1:
        return default
    if not isinstance(column, int) or not -width <= column < width:
        raise InputError(f"{path}: data.{name}: {column!r} is not a column index of this CoNLL "
                         f"file ({width} columns a line)")
    return column % width


def _read_jsonl(path: Path, key: str, text_column: Column,
                label_column: Column | list[Column], labelled: bool) -> TaggedSentences:
    names = (text_column if isinstance(text_column, str) else JSONL_KEYS[0],
             label_column if isinstance(label_column, str) else JSONL_KEYS[1])[:1 + labelled]
    words, tags, lines = [], [], []
    for number, record, problem in tables.json_lines(path, key):
        if problem is not None:
            raise InputError(f"{path}: {key}: line {number}: {problem}")
        lists = [record.get(name) for name in names]
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                   for v in lists):
            raise InputError(f"{path}: {key}: line {number}: expected an object with lists "
                             f"of strings under {' and '.join(map(repr, names))}")
        if labelled and len(lists[0]) != len(lists[1]):
            raise InputError(f"{path}: {key}: line {number}: {len(lists[0])} tokens but "
                             f"{len(lists[1])} tags")
        if lists[0]:
            words.append(lists[0])
            tags.append(lists[1] if labelled else [])
            lines.append(number)
    return TaggedSentences(words, tags, lines)


def tag_names(tags: Sequence[Sequence[str]]) -> list[str]:
    """The tags in id order: ``O`` first (the usual outside tag), then sorted."""
    unique = {tag for sentence in tags for tag in sentence}
    return sorted(unique, key=lambda tag: (tag != "O", tag))

"""Tokenised text examples in flat numpy arrays: tokenise once, truncate and batch per trial.

:func:`encode` runs the tokenizer once per dataset (in ``prepare``), truncating only at the
model's maximum. Each token keeps its *segment* (-1 special token, 0 first text, 1 second text),
so :func:`truncate` can cut a trial's ``max_length`` later exactly as the tokenizer's
``longest_first`` truncation would, keeping the special tokens, without the tokenizer.
:func:`length_grouped_batches` orders examples into batches of similar length (seeded) and
:func:`collate` pads each batch to its longest example. Unlike Hugging Face's ``group_by_length``,
which cuts even a small dataset into at least four sorted chunks, a chunk here is always 50
batches (a 1000-sentence set is sorted whole: less padding) and the batch order is shuffled.
Flat arrays (one concatenated id array plus offsets) pickle small and fast into Ray's object store.

Token classification (:func:`encode_words`) keeps a label per token, aligned with the ids: a
word's tag on its first sub-token, :data:`~trainables.tasks.IGNORE` on the others and on the
special tokens, so truncation and padding treat the labels as they treat the ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autoft.core.errors import InputError
from trainables.parallel import ALONE, Workers
from trainables.tasks import IGNORE

#: Examples per sorted chunk of :func:`length_grouped_batches`, in batches (Hugging Face: 50).
MEGABATCH_BATCHES = 50
#: Evaluation (and prediction) batch size (no gradients: larger batches are cheaper per example).
EVAL_BATCH_SIZE = 64
#: Truncation when neither tokenizer nor model config states a maximum.
FALLBACK_MAX_LENGTH = 512


def load_tokenizer(model: str | Path):
    """The model's config and fast tokenizer (``model``: a Hugging Face folder or hub id)."""
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


def max_input_length(model_config, tokenizer) -> int:
    """The longest input the model takes: the tokenizer's limit, else its position count."""
    limits = [n for n in (tokenizer.model_max_length,
                          getattr(model_config, "max_position_embeddings", None))
              if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits, default=FALLBACK_MAX_LENGTH)


@dataclass(frozen=True)
class Encoded:
    """Tokenised examples: example ``i`` is ``ids[offsets[i]:offsets[i + 1]]``; its labels are
    ``labels[i]``, or with ``per_token`` ``labels[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    segments: np.ndarray
    token_types: np.ndarray | None
    offsets: np.ndarray
    labels: np.ndarray
    per_token: bool = False

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per example."""
        return np.diff(self.offsets)


def encode(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None,
           labels: np.ndarray, max_length: int) -> Encoded:
    """Tokenise (with special tokens) once; ``tokenizer`` must be a fast (tokenizers) one."""
    batch = tokenizer(list(texts), None if pairs is None else list(pairs), truncation=True,
                      max_length=max_length, return_attention_mask=False)
    return _flat(batch, labels)


def encode_words(tokenizer, words: Sequence[Sequence[str]], tags: Sequence[Sequence[int]],
                 max_length: int) -> tuple[Encoded, int]:
    """Pre-split sentences with a tag id per word, tokenised once; also how many words the
    truncation at ``max_length`` dropped (they are neither trained on nor scored)."""
    batch = tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True,
                      max_length=max_length, return_attention_mask=False)
    labels, dropped = [], 0
    for i, sentence_tags in enumerate(tags):
        word_ids = batch.word_ids(i)
        firsts = [w is not None and (j == 0 or word_ids[j - 1] != w)
                  for j, w in enumerate(word_ids)]
        labels.extend(sentence_tags[w] if first else IGNORE
                      for w, first in zip(word_ids, firsts, strict=True))
        dropped += len(sentence_tags) - sum(firsts)
    return _flat(batch, np.asarray(labels, dtype=np.int64), per_token=True), dropped


def _flat(batch, labels: np.ndarray, per_token: bool = False) -> Encoded:
    """A tokenizer's batch encoding as flat arrays."""
    ids = batch["input_ids"]
    segments = [[-1 if s is None else s for s in batch.sequence_ids(i)] for i in range(len(ids))]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in ids], out=offsets[1:])
    types = batch.get("token_type_ids")
    return Encoded(ids=np.fromiter((t for row in ids for t in row), np.int64, offsets[-1]),
                   segments=np.fromiter((s for row in segments for s in row), np.int8,
                                        offsets[-1]),
                   token_types=None if types is None else np.fromiter(
                       (t for row in types for t in row), np.int8, offsets[-1]),
                   offsets=offsets, labels=np.asarray(labels), per_token=per_token)


def _kept_content(first: int, second: int, budget: int) -> tuple[int, int]:
    """Tokens kept of each text under the tokenizers library's ``longest_first`` truncation to
    ``budget`` text tokens: the shorter text stays whole if the longer can take the rest, else
    both get half (the longer, or else the second, one token more)."""
    if first + second <= budget:
        return first, second
    shorter, longer = min(first, second), max(budget - min(first, second), min(first, second))
    if shorter + longer > budget:
        shorter, longer = budget // 2, budget - budget // 2
    return (shorter, longer) if first <= second else (longer, shorter)


def truncate(data: Encoded, max_length: int) -> Encoded:
    """Examples cut to ``max_length`` tokens: text tokens are dropped from the end of the longer
    text first (``longest_first``); special tokens stay."""
    lengths = data.lengths
    if lengths.max(initial=0) <= max_length:
        return data
    keep = np.ones(len(data.ids), dtype=bool)
    for i in np.flatnonzero(lengths > max_length):
        start, end = data.offsets[i], data.offsets[i + 1]
        segments = data.segments[start:end]
        counts = [int((segments == s).sum()) for s in (0, 1)]
        budget = max(0, max_length - int((segments < 0).sum()))
        kept = _kept_content(counts[0], counts[1], budget)
        for segment, n in zip((0, 1), kept, strict=True):
            in_segment = segments == segment
            keep[start:end] &= ~in_segment | (np.cumsum(in_segment) <= n)
    new_lengths = np.add.reduceat(keep, data.offsets[:-1]) if len(data) else lengths
    offsets = np.zeros_like(data.offsets)
    np.cumsum(new_lengths, out=offsets[1:])
    return Encoded(ids=data.ids[keep], segments=data.segments[keep],
                   token_types=None if data.token_types is None else data.token_types[keep],
                   offsets=offsets, labels=data.labels[keep] if data.per_token else data.labels,
                   per_token=data.per_token)


def length_grouped_batches(lengths: np.ndarray, batch_size: int,
                           rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length: a random permutation is cut into megabatches of
    ``MEGABATCH_BATCHES`` batches, each sorted by length and split; the batch order is shuffled,
    the longest batch first (its memory peak shows at once)."""
    order = rng.permutation(len(lengths))
    size = MEGABATCH_BATCHES * batch_size
    batches = []
    for start in range(0, len(order), size):
        mega = order[start:start + size]
        mega = mega[np.argsort(-lengths[mega], kind="stable")]
        batches.extend(mega[i:i + batch_size] for i in range(0, len(mega), batch_size))
    batches = [batches[i] for i in rng.permutation(len(batches))]
    longest = int(np.argmax([lengths[b].max() for b in batches]))
    batches[0], batches[longest] = batches[longest], batches[0]
    return batches


Batch = tuple[dict[str, torch.Tensor], torch.Tensor]


def collate(data: Encoded, indices: np.ndarray, pad_id: int) -> Batch:
    """A batch padded to its longest example: model inputs (``input_ids``, ``attention_mask``,
    ``token_type_ids`` where the tokenizer makes them) and labels (per token: padded with
    :data:`~trainables.tasks.IGNORE`)."""
    starts, ends = data.offsets[indices], data.offsets[indices + 1]
    lengths = ends - starts
    width = int(lengths.max())
    mask = np.arange(width) < lengths[:, None]
    gather = np.where(mask, starts[:, None] + np.arange(width), 0)
    inputs = {"input_ids": torch.from_numpy(np.where(mask, data.ids[gather], pad_id)),
              "attention_mask": torch.from_numpy(mask.astype(np.int64))}
    if data.token_types is not None:
        inputs["token_type_ids"] = torch.from_numpy(
            np.where(mask, data.token_types[gather], 0).astype(np.int64))
    labels = (np.where(mask, data.labels[gather], IGNORE) if data.per_token
              else data.labels[indices])
    return inputs, torch.from_numpy(labels)


def sorted_batches(data: Encoded, batch_size: int, pad_id: int,
                   workers: Workers = ALONE) -> Iterator[Batch]:
    """Evaluation batches in length order (least padding): ``workers``' share of them."""
    order = np.argsort(data.lengths, kind="stable")
    for start in workers.share(range(0, len(order), batch_size)):
        yield collate(data, order[start:start + batch_size], pad_id)

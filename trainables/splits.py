"""Seeded choices of examples, shared by the text and image data: which rows a
``max_*_samples`` limit keeps, and which rows become the evaluation set when there is no
``data.eval``. Both work on positions, so any sequence (rows of a table, image files) splits
the same way for the same seed.

>>> subsample_positions(10, 3, seed=0)
[5, 6, 9]
>>> holdout_positions(10, seed=0)
([0, 1, 2, 3, 5, 6, 7, 8, 9], [4])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self, TypeVar

import numpy as np

from autoft.core.errors import InputError

#: The share of the training data held out for evaluation when there is no ``data.eval``.
HOLDOUT_FRACTION = 0.1


def subsample_positions(count: int, limit: int | None, seed: int) -> list[int]:
    """At most ``limit`` of ``count`` positions, drawn without replacement, in order."""
    if limit is None or limit >= count:
        return list(range(count))
    keep = np.random.default_rng(seed).choice(count, size=limit, replace=False)
    return np.sort(keep).tolist()


def holdout_positions(count: int, seed: int) -> tuple[list[int], list[int]]:
    """(train, eval) positions: a seeded ``HOLDOUT_FRACTION`` (at least one) for eval."""
    if count < 2:
        raise InputError("data.eval is not set and the training data has fewer than 2 "
                         "examples to hold out an evaluation set from")
    order = np.random.default_rng(seed).permutation(count)
    n_eval = max(1, round(count * HOLDOUT_FRACTION))
    return np.sort(order[n_eval:]).tolist(), np.sort(order[:n_eval]).tolist()


class Rows(Protocol):
    """Examples that can be counted and picked by position (table rows, tagged sentences)."""

    def __len__(self) -> int: ...

    def take(self, indices: Sequence[int]) -> Self: ...


R = TypeVar("R", bound=Rows)


def subsample(rows: R, limit: int | None, seed: int) -> R:
    """At most ``limit`` of ``rows``, drawn without replacement with ``seed`` (order kept)."""
    return rows.take(subsample_positions(len(rows), limit, seed))


def split_holdout(rows: R, seed: int) -> tuple[R, R]:
    """A seeded ``HOLDOUT_FRACTION`` of ``rows`` as eval (at least one row), the rest as train."""
    train, evaluation = holdout_positions(len(rows), seed)
    return rows.take(train), rows.take(evaluation)

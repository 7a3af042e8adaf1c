"""What became of a trial, decided once for the results folder, MLflow and PaddleHub's files.

>>> trial_status(failed=False, ended=True, epochs=1, num_epochs=3)
'pruned'
>>> error_line("Failure # 1\\nTraceback ...\\nValueError: nan loss\\n")
'ValueError: nan loss'
>>> best_of([("a", 0.5), ("b", None), ("c", 0.5)], score=lambda item: item[1])
('a', 0.5)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal, TypeVar

Status = Literal["completed", "pruned", "failed", "running"]
T = TypeVar("T")

#: Longest error text kept for a trial (an MLflow tag, a ``trials.csv`` cell).
MAX_ERROR_CHARS = 500


def trial_status(*, failed: bool, ended: bool, epochs: int, num_epochs: int | None) -> Status:
    """``failed``; ``completed`` when it reached ``num_epochs`` (None: any end is complete);
    ``pruned`` when it ended earlier (a scheduler stopped it); else still ``running``."""
    if failed:
        return "failed"
    if num_epochs is None or epochs >= num_epochs:
        return "completed"
    return "pruned" if ended else "running"


def error_line(text: str | None) -> str | None:
    """The last line (the exception and its message) of the latest failure in ``text``, which
    may hold several (Ray's error file appends one ``Failure # N`` section per failure)."""
    latest = (text or "").rsplit("Failure # ", 1)[-1]
    lines = [line.strip() for line in latest.splitlines() if line.strip()]
    return lines[-1][:MAX_ERROR_CHARS] if lines else None


def error_file_line(error_file: str | None) -> str | None:
    """:func:`error_line` of Ray's error file for a trial (None: no file, or no text in it)."""
    if error_file is None or not Path(error_file).is_file():
        return None
    return error_line(Path(error_file).read_text(encoding="utf-8", errors="replace"))


def best_of(items: Iterable[T], score: Callable[[T], float | None]) -> T | None:
    """The item with the highest score, the earliest among equals; None when none has one."""
    scored = [item for item in items if score(item) is not None]
    return max(scored, key=score) if scored else None  # type: ignore[arg-type,return-value]

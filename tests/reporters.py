"""A trainables Reporter for tests: keeps every epoch's metrics and state in memory."""

from __future__ import annotations

from typing import Any

from trainables import TrialContext


class ListReporter:
    """What a trainable reports, in order; it never resumes (``restore`` gives None)."""

    trial = TrialContext(index=0, seed=0)

    def __init__(self) -> None:
        self.reports: list[dict[str, float]] = []
        self.states: list[dict[str, Any] | None] = []

    def restore(self) -> None:
        return None

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        self.reports.append(metrics)
        self.states.append(state)

"""The usage examples in the autoft.finetune docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["blocks", "l2sp", "param_groups", "schedules", "unfreezing"])
def test_docstring_examples(module: str) -> None:
    results = doctest.testmod(importlib.import_module(f"autoft.finetune.{module}"))
    assert results.attempted > 0 and results.failed == 0

"""Shared fixtures: where ../shared/data is, and small real datasets made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real datasets live beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real ImageFolder (scikit-learn digits, 3 classes) for fast end-to-end runs."""
    from autoft.demo import write_digits_imagefolder

    return write_digits_imagefolder(tmp_path_factory.mktemp("digits"), n_train=24, n_eval=12,
                                    classes=3)

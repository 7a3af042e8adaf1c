"""``search.confirm: auto`` costs at most a quarter of the trial-epochs the search spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoft.core.config import config_from_mapping
from autoft.tuning.confirm import settings_for
from autoft.tuning.results import TrialRecord


def trials(epochs: list[int]) -> list[TrialRecord]:
    return [TrialRecord(trial_id=f"t{i}", name=f"trial_{i:04d}", hparams={},
                        status="completed" if n == 3 else "pruned", epochs=n, score=0.5)
            for i, n in enumerate(epochs)]


def config(tmp_path: Path, confirm: object = "auto", num_samples: int = 16):
    return config_from_mapping({"name": "c", "trainable": "tests.toy_trainable:quadratic",
                                "space": {"learning_rate": {"type": "float", "low": 1e-4,
                                                            "high": 1e-3}},
                                "fixed": {"num_epochs": 3},
                                "search": {"num_samples": num_samples, "confirm": confirm}},
                               tmp_path)


@pytest.mark.parametrize(("epochs", "top_k"), [
    ([3] * 16, 3),                 # nothing pruned: 48 trial-epochs pay for 4 retrains, 3 asked
    ([3] * 7 + [1] * 8 + [2], 2),  # ants/bees' search: 31 trial-epochs pay for 2
    ([3] * 3 + [1] * 13, None),    # 22 trial-epochs pay for 1 retrain: no choice left, off
])
def test_auto_retrains_what_a_quarter_of_the_search_pays_for(tmp_path: Path, epochs: list[int],
                                                             top_k: int | None) -> None:
    found = settings_for(config(tmp_path), trials(epochs))
    assert (found.top_k if found else None) == top_k
    if found:
        assert found.top_k * found.seeds * 3 <= 0.25 * sum(epochs)


def test_explicit_settings_and_small_searches_are_left_as_they_are(tmp_path: Path) -> None:
    explicit = settings_for(config(tmp_path, {"top_k": 4, "seeds": 2}), trials([1] * 16))
    assert (explicit.top_k, explicit.seeds) == (4, 2)
    assert settings_for(config(tmp_path, num_samples=4), trials([3] * 4)) is None
    assert settings_for(config(tmp_path, None), trials([3] * 16)) is None

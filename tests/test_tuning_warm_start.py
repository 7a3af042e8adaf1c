"""Warm starts: the baseline and the study's points, fitted to the space, first in the search."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoft.core.config import Config
from autoft.core.errors import InputError
from autoft.core.space_files import load_space
from autoft.tuning.algorithms import initial_points
from autoft.tuning.warm_start import warm_start_points

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def config(trainable: str = "text", epochs: int = 3, **search: object) -> Config:
    return Config(name="w", trainable=trainable, model="m", fixed={"num_epochs": epochs},
                  search=search)


def test_text_starts_from_the_baseline_then_warm_up_and_stlr() -> None:
    space = load_space(SPACES / "ulmfit_text.yaml")
    points = warm_start_points(config("text"), space)
    assert points[0] == {"lr_schedule": "constant", "dis_blocks": 0, "frz_blocks": 0,
                         "learning_rate": 1e-4, "batch_size": 32}  # the benchmarks' baseline
    warm_up = {k: points[1][k] for k in ("lr_schedule", "warmup_proportion", "learning_rate",
                                         "batch_size")}
    assert warm_up == {"lr_schedule": "warmup_linear", "warmup_proportion": 0.1,
                       "learning_rate": 1e-4, "batch_size": 32}  # as the study measured it
    assert points[2]["lr_schedule"] == "stlr" and points[2]["cut_frac"] == 0.1
    for point in points:
        space.check_point(point, "warm start")  # every point is one the space holds


def test_image_unfreezes_gradually_only_from_three_epochs() -> None:
    space = load_space(SPACES / "ulmfit_image.yaml")
    points = warm_start_points(config("image", 3), space)
    assert [p.get("frz_blocks") for p in points] == [0, 3]
    assert points[1]["batch_size"] == 16  # the study's
    assert len(warm_start_points(config("image", 1), space)) == 1  # the baseline alone


def test_a_value_outside_the_space_is_left_to_the_sampler() -> None:
    space = load_space({"learning_rate": {"type": "float", "low": 2e-4, "high": 1e-3},
                        "dis_blocks": {"type": "int", "low": 1, "high": 3}})
    assert warm_start_points(config("text"), space) == []  # 1e-4 and 0 are both outside


def test_none_user_functions_and_explicit_points() -> None:
    space = load_space(SPACES / "ulmfit_text.yaml")
    assert warm_start_points(config(warm_start="none"), space) == []
    assert warm_start_points(config("tests.toy_trainable:quadratic"), space) == []
    given = [{"learning_rate": 1e-4}]
    assert initial_points(config(warm_start=given), space)[0] == given[0]
    with pytest.raises(InputError, match=r"search.warm_start\[0\]: learning_rate"):
        initial_points(config(warm_start=[{"learning_rate": 5.0}]), space)


def test_a_searched_backbone_gets_the_baseline_on_each_choice() -> None:
    space = load_space(SPACES / "ulmfit_image_backbones.yaml")
    image = Config(name="w", trainable="image", model="tf_efficientnet_lite0",
                   fixed={"num_epochs": 3})
    points = warm_start_points(image, space)
    assert [(p["model"], p["frz_blocks"]) for p in points] == [
        ("tf_efficientnet_lite0", 0), ("tf_efficientnet_lite1", 0), ("tf_efficientnet_lite2", 0),
        ("tf_efficientnet_lite0", 3)]  # the baselines first, then the study's point
    assert all(p["learning_rate"] == 1e-4 and p["batch_size"] == 16 for p in points)

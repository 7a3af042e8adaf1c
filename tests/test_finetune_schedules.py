"""The learning-rate multipliers: exact values from design.md's formulas, bounds, LambdaLR use."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autoft.finetune import lr_multiplier, stlr_multiplier, warmup_linear_multiplier


@pytest.mark.parametrize(("step", "expected"), [
    (0, 1 / 32),                              # p = 0
    (5, (1 + 0.5 * 31) / 32),                 # p = 5/10
    (10, 1.0),                                # t = cut: the peak
    (55, (1 + 0.5 * 31) / 32),                # p = 1 - 45/90
    (99, (1 + (1 - 89 / 90) * 31) / 32),      # last step
])
def test_stlr_exact_values(step: int, expected: float) -> None:
    assert stlr_multiplier(step, 100, cut_frac=0.1, ratio=32) == pytest.approx(expected, rel=1e-15)


def test_stlr_with_cut_zero_is_a_linear_decay_from_the_peak() -> None:
    # PaddleHub's failure: dogcat 1/10, T = 22, cut_frac = 0.01 gives cut = 0.
    values = [stlr_multiplier(t, 22, cut_frac=0.01, ratio=32) for t in range(22)]
    assert values[0] == 1.0
    for t, value in enumerate(values):
        assert value == pytest.approx((1 + (1 - t / 22) * 31) / 32, rel=1e-15)
    steps = [a - b for a, b in zip(values, values[1:], strict=False)]
    assert steps == pytest.approx([31 / (22 * 32)] * 21, rel=1e-12)


def test_stlr_cut_is_the_floor_of_the_decimal_product() -> None:
    # 100 * 0.29 is 28.999999999999996 in floats; the user means cut = 29.
    assert stlr_multiplier(28, 100, cut_frac=0.29) < 1.0
    assert stlr_multiplier(29, 100, cut_frac=0.29) == 1.0


def test_stlr_with_cut_frac_one_only_rises() -> None:
    assert [stlr_multiplier(t, 4, cut_frac=1.0, ratio=5) for t in range(4)] == [
        (1 + t / 4 * 4) / 5 for t in range(4)]


def test_stlr_with_ratio_one_is_constant() -> None:
    assert {stlr_multiplier(t, 30, cut_frac=0.2, ratio=1) for t in range(30)} == {1.0}


@pytest.mark.parametrize(("step", "end", "expected"), [
    (0, 0.0, 0.0),
    (5, 0.0, 0.5),
    (10, 0.0, 1.0),
    (55, 0.0, 45 / 90),
    (99, 0.0, 1 / 90),
    (10, 1 / 32, 1.0),
    (99, 1 / 32, 1 / 32 + (31 / 32) * (1 / 90)),
])
def test_warmup_linear_exact_values(step: int, end: float, expected: float) -> None:
    value = warmup_linear_multiplier(step, 100, warmup_proportion=0.1, end_lr_ratio=end)
    assert value == pytest.approx(expected, rel=1e-15, abs=0.0)


def test_warmup_zero_decays_from_the_peak_at_once() -> None:
    values = [warmup_linear_multiplier(t, 10, warmup_proportion=0.0) for t in range(10)]
    assert values == pytest.approx([(10 - t) / 10 for t in range(10)], rel=1e-15)
    assert values[0] == 1.0


def test_a_single_step_runs_at_the_peak() -> None:
    assert stlr_multiplier(0, 1, cut_frac=0.5) == 1.0
    assert warmup_linear_multiplier(0, 1, warmup_proportion=0.5) == 1.0


@settings(max_examples=300, deadline=None)
@given(total=st.integers(1, 10**6), data=st.data(),
       cut_frac=st.floats(0.0, 1.0), ratio=st.floats(1.0, 1e4))
def test_stlr_stays_between_one_over_ratio_and_one(total: int, data: st.DataObject,
                                                   cut_frac: float, ratio: float) -> None:
    step = data.draw(st.integers(0, total - 1))
    value = stlr_multiplier(step, total, cut_frac=cut_frac, ratio=ratio)
    assert 1 / ratio - 1e-12 <= value <= 1 + 1e-12


@settings(max_examples=300, deadline=None)
@given(total=st.integers(1, 10**6), data=st.data(),
       warmup=st.floats(0.0, 1.0), end=st.floats(0.0, 1.0))
def test_warmup_linear_stays_between_end_and_one_after_warmup(
        total: int, data: st.DataObject, warmup: float, end: float) -> None:
    step = data.draw(st.integers(0, total - 1))
    value = warmup_linear_multiplier(step, total, warmup_proportion=warmup, end_lr_ratio=end)
    assert 0.0 <= value <= 1 + 1e-12
    if step >= total * warmup:
        assert end - 1e-12 <= value


def test_lambda_lr_scales_every_group_by_the_same_multiplier() -> None:
    total = 20
    weights = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": [weights[0]], "lr": 1.0},
                                 {"params": [weights[1]], "lr": 0.25}])
    schedule = lr_multiplier("stlr", total, cut_frac=0.2, ratio=8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    for step in range(total):
        expected = stlr_multiplier(step, total, cut_frac=0.2, ratio=8)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
            [expected, 0.25 * expected], rel=1e-12)
        optimizer.step()
        scheduler.step()  # the last call evaluates t = total: held at the last step's value
    assert optimizer.param_groups[0]["lr"] == pytest.approx(
        stlr_multiplier(total - 1, total, cut_frac=0.2, ratio=8))


def test_lr_multiplier_names() -> None:
    assert lr_multiplier("constant", 5)(3) == 1.0
    assert lr_multiplier("warmup_linear", 10, warmup_proportion=0.2, cut_frac=7.0)(1) == 0.5
    assert lr_multiplier("stlr", 22, cut_frac=0.01, warmup_proportion=-1.0)(0) == 1.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: stlr_multiplier(0, 10, cut_frac=1.5), r"cut_frac must be in \[0, 1\], got 1.5"),
    (lambda: stlr_multiplier(0, 10, cut_frac=-0.1), r"cut_frac must be in \[0, 1\]"),
    (lambda: stlr_multiplier(0, 10, ratio=0.5), "ratio must be at least 1, got 0.5"),
    (lambda: stlr_multiplier(0, 0), "total_steps must be at least 1, got 0"),
    (lambda: stlr_multiplier(10, 10), r"step must be in \[0, total_steps\) = \[0, 10\), got 10"),
    (lambda: stlr_multiplier(-1, 10), r"step must be in \[0, total_steps\)"),
    (lambda: warmup_linear_multiplier(0, 10, 1.2), r"warmup_proportion must be in \[0, 1\]"),
    (lambda: warmup_linear_multiplier(0, 10, 0.1, end_lr_ratio=2.0),
     r"end_lr_ratio must be in \[0, 1\], got 2.0"),
    (lambda: warmup_linear_multiplier(3, 3, 0.1), r"step must be in \[0, total_steps\)"),
    (lambda: lr_multiplier("cosine", 10),
     "unknown lr_schedule 'cosine'; expected one of constant, warmup_linear, stlr"),
    (lambda: lr_multiplier("stlr", 0), "total_steps must be at least 1"),
    (lambda: lr_multiplier("stlr", 10, ratio=0.0), "ratio must be at least 1"),
    (lambda: lr_multiplier("warmup_linear", 10, end_lr_ratio=-0.5), "end_lr_ratio must be in"),
])
def test_bad_arguments_raise_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()

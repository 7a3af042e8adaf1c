"""Learning-rate schedules as multipliers of the peak rate, for ``LambdaLR``.

Each function returns η_t / η_max for optimizer step ``t`` of ``T`` (design.md, "The strategies,
exactly"). ``LambdaLR`` multiplies every parameter group's own rate by the same value, so the
ratios that discriminative fine-tuning sets between groups hold at every step.

Example::

    optimizer = torch.optim.AdamW(build_param_groups(model, lr=5e-5, dis_blocks=3))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier("stlr", total_steps=len(loader) * epochs, cut_frac=0.1))
    for batch in loader:
        ...
        optimizer.step()
        scheduler.step()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal

SCHEDULES = ("constant", "warmup_linear", "stlr")


def _floor_fraction(total_steps: int, fraction: float) -> int:
    """⌊total_steps · fraction⌋ with the fraction read as the decimal the user wrote.

    Plain float arithmetic floors 100 · 0.29 to 28; the user meant 29.
    """
    return math.floor(Decimal(str(fraction)) * total_steps)


def _check_total_steps(total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")


def _check_step(step: int, total_steps: int) -> None:
    _check_total_steps(total_steps)
    if not 0 <= step < total_steps:
        raise ValueError(f"step must be in [0, total_steps) = [0, {total_steps}), got {step}")


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _check_stlr(cut_frac: float, ratio: float) -> None:
    _check_unit_interval("cut_frac", cut_frac)
    if not ratio >= 1:
        raise ValueError(
            f"ratio must be at least 1, got {ratio} (the lowest rate is η_max / ratio)")


def _check_warmup(warmup_proportion: float, end_lr_ratio: float) -> None:
    _check_unit_interval("warmup_proportion", warmup_proportion)
    _check_unit_interval("end_lr_ratio", end_lr_ratio)


def stlr_multiplier(step: int, total_steps: int, cut_frac: float = 0.1,
                    ratio: float = 32) -> float:
    """Slanted triangular learning rate (ULMFiT, eq. 3) at ``step``, as a fraction of η_max.

    cut = ⌊T·cut_frac⌋; p = t/cut while t < cut, else 1 − (t − cut)/(T − cut); the result is
    (1 + p·(ratio − 1))/ratio. With cut = 0 (e.g. T = 22, cut_frac = 0.01) it is a pure linear
    decay from η_max, never a division by zero.

    Example::

        >>> stlr_multiplier(0, 100)      # starts at 1/ratio
        0.03125
        >>> stlr_multiplier(10, 100)     # peak at t = cut = 10
        1.0
    """
    _check_step(step, total_steps)
    _check_stlr(cut_frac, ratio)
    cut = _floor_fraction(total_steps, cut_frac)
    p = step / cut if step < cut else 1 - (step - cut) / (total_steps - cut)
    return (1 + p * (ratio - 1)) / ratio


def warmup_linear_multiplier(step: int, total_steps: int, warmup_proportion: float,
                             end_lr_ratio: float = 0.0) -> float:
    """Linear warm-up then linear decay at ``step``, as a fraction of η_max.

    w = ⌊T·warmup_proportion⌋; t/w while t < w, else e + (1 − e)·(T − t)/(T − w) with
    e = ``end_lr_ratio`` (0, or 1/32 for the "lr/32" variant). w = 0 means no warm-up.

    Example::

        >>> warmup_linear_multiplier(5, 100, warmup_proportion=0.1)
        0.5
        >>> warmup_linear_multiplier(10, 100, warmup_proportion=0.1)
        1.0
    """
    _check_step(step, total_steps)
    _check_warmup(warmup_proportion, end_lr_ratio)
    warmup = _floor_fraction(total_steps, warmup_proportion)
    if step < warmup:
        return step / warmup
    return end_lr_ratio + (1 - end_lr_ratio) * (total_steps - step) / (total_steps - warmup)


def lr_multiplier(schedule: str, total_steps: int, *, cut_frac: float = 0.1, ratio: float = 32,
                  warmup_proportion: float = 0.1,
                  end_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """The multiplier function of a named schedule, ready for ``LambdaLR``.

    ``schedule`` is ``constant``, ``warmup_linear`` or ``stlr``; the knobs that the schedule
    does not use are ignored, so a trainable can pass every hyperparameter it has. Arguments
    are checked here, once, rather than at the first step.

    ``LambdaLR`` evaluates the function once more after the last optimizer step (at
    t = ``total_steps``); that value is never used for an update, and steps at or past the end
    keep the multiplier of the last step.

    Example::

        >>> f = lr_multiplier("stlr", total_steps=22, cut_frac=0.01)
        >>> f(0), f(11)                  # cut = 0: linear decay from η_max
        (1.0, 0.515625)
        >>> f(22) == f(21)               # LambdaLR's extra call after the last step
        True
        >>> lr_multiplier("constant", total_steps=10)(3)
        1.0
    """
    _check_total_steps(total_steps)
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "stlr":
        _check_stlr(cut_frac, ratio)
        return lambda step: stlr_multiplier(min(step, total_steps - 1), total_steps,
                                            cut_frac, ratio)
    if schedule == "warmup_linear":
        _check_warmup(warmup_proportion, end_lr_ratio)
        return lambda step: warmup_linear_multiplier(min(step, total_steps - 1), total_steps,
                                                     warmup_proportion, end_lr_ratio)
    raise ValueError(f"unknown lr_schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")

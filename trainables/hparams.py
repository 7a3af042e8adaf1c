"""The hyperparameters the text and image trainables understand: names, types, ranges, defaults.

This is the one place that knows them (design.md, "Hyperparameters the trainables understand").
The search driver validates a space against :data:`KNOWN_HPARAMS`; a trainable turns the trial's
mapping into a typed :class:`HParams` with :func:`parse_hparams`, so an unknown name or a value
out of range is an :class:`~autoft.core.errors.InputError` before any training starts.

Example::

    hp = parse_hparams({"learning_rate": 2e-5, "batch_size": 16}, trainable="text")
    hp.num_epochs          # 3, the default
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autoft.core.errors import InputError, validation_message

LrSchedule = Literal["constant", "warmup_linear", "stlr"]

#: The default peak learning rate per trainable (``learning_rate`` has no single default).
DEFAULT_LEARNING_RATE: dict[str, float] = {"text": 5e-5, "image": 1e-4}


class HParams(BaseModel):
    """One trial's hyperparameters, validated; every field has design.md's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(default=5e-5, gt=0)
    batch_size: int = Field(default=32, ge=1)
    num_epochs: int = Field(default=3, ge=1)
    #: Train only the first this many of the ``num_epochs`` the schedule and the unfreezing
    #: plan for: an exported best epoch, reproduced exactly (None: all of them).
    stop_after_epochs: int | None = Field(default=None, ge=1)
    lr_schedule: LrSchedule = "constant"
    cut_frac: float = Field(default=0.1, ge=0, le=1)
    ratio: float = Field(default=32, ge=1)
    warmup_proportion: float = Field(default=0.1, ge=0, le=1)
    end_lr_ratio: float = Field(default=0.0, ge=0, le=1)
    dis_blocks: int = Field(default=0, ge=0)
    factor: float = Field(default=2.6, gt=0)
    frz_blocks: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    l2sp_alpha: float = Field(default=0.0, ge=0)
    l2sp_beta: float = Field(default=0.0, ge=0)
    max_length: int = Field(default=128, ge=2)
    #: Multi-label: a label is predicted where its probability reaches this.
    threshold: float = Field(default=0.5, gt=0, lt=1)
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _stops_within_the_plan(self) -> HParams:
        if self.stop_after_epochs is not None and self.stop_after_epochs > self.num_epochs:
            raise ValueError(f"stop_after_epochs ({self.stop_after_epochs}) is more than "
                             f"num_epochs ({self.num_epochs}): lower it, or raise num_epochs")
        return self

    @property
    def epochs_to_train(self) -> int:
        """How many epochs the loop runs: ``stop_after_epochs``, else ``num_epochs``."""
        return self.stop_after_epochs or self.num_epochs


#: Every hyperparameter name a text or image trainable accepts.
KNOWN_HPARAMS: frozenset[str] = frozenset(HParams.model_fields)

#: The hyperparameters autoft itself reads, whatever the trainable: ``num_epochs`` (the
#: schedulers' horizon, confirmation's budget), ``seed`` (each trial's seed) and ``batch_size``
#: (GPU packing); they obey :class:`HParams`' rules for a user function too.
DRIVER_HPARAMS: tuple[str, ...] = ("num_epochs", "seed", "batch_size")


def check_hparam_names(names: Iterable[str], where: str = "hyperparameters") -> None:
    """Refuse names outside :data:`KNOWN_HPARAMS` (a typo in a space or in ``fixed``)."""
    unknown = sorted(set(names) - KNOWN_HPARAMS)
    if unknown:
        raise InputError(f"{where}: unknown hyperparameter(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(KNOWN_HPARAMS))})")


def check_driver_hparams(values: Mapping[str, Any], where: str = "fixed") -> None:
    """Refuse a value of :data:`DRIVER_HPARAMS` in ``values`` that breaks :class:`HParams`'
    rule for it (``num_epochs: three``, ``seed: -1``); other keys are not looked at."""
    try:
        HParams.model_validate({k: values[k] for k in DRIVER_HPARAMS if k in values})
    except ValidationError as exc:
        raise InputError(validation_message(where, exc)) from None


def parse_hparams(values: Mapping[str, Any], trainable: str = "text",
                  where: str = "hyperparameters") -> HParams:
    """Validate a trial's hyperparameters; ``learning_rate`` defaults per ``trainable``.

    Unknown names and out-of-range values raise :class:`InputError` naming ``where`` and the
    parameter.
    """
    check_hparam_names(values, where)
    merged = {"learning_rate": DEFAULT_LEARNING_RATE.get(trainable, 5e-5), **values}
    try:
        return HParams.model_validate(merged)
    except ValidationError as exc:
        raise InputError(validation_message(where, exc)) from None

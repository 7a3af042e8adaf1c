"""build_param_groups on a small model: rates per block, weight decay only where it belongs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoft.finetune import build_param_groups


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                         nn.Linear(4, 8), nn.LayerNorm(8),
                         nn.Linear(8, 2))


def _grouped_ids(groups: list[dict]) -> list[int]:
    return [id(p) for group in groups for p in group["params"]]


def test_discriminative_rates_and_names() -> None:
    model = _model()
    groups = build_param_groups(model, lr=0.1, dis_blocks=2, factor=3.0, weight_decay=0.01,
                                head=model[5])
    rates = {g["name"]: (g["lr"], g["block"]) for g in groups}
    assert rates == {"head": (0.1, 0), "head.no_decay": (0.1, 0),
                     "block1": (0.1 / 3.0**1, 1), "block1.no_decay": (0.1 / 3.0**1, 1),
                     "block2": (0.1 / 3.0**2, 2), "block2.no_decay": (0.1 / 3.0**2, 2)}
    assert sorted(_grouped_ids(groups)) == sorted(id(p) for p in model.parameters())


def test_no_weight_decay_on_biases_and_norm_weights() -> None:
    model = _model()
    groups = build_param_groups(model, lr=0.1, dis_blocks=2, weight_decay=0.05, head=model[5])
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.05 for p in g["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight), id(model[5].weight)}
    assert all(g["weight_decay"] == 0.0 for g in groups if g["name"].endswith(".no_decay"))


def test_zero_blocks_trains_the_whole_model_at_lr_without_needing_the_head() -> None:
    model = _model()
    groups = build_param_groups(model, lr=0.2, weight_decay=0.01)
    assert [(g["name"], g["lr"]) for g in groups] == [("model", 0.2), ("model.no_decay", 0.2)]
    assert sorted(_grouped_ids(groups)) == sorted(id(p) for p in model.parameters())


def test_frozen_parameters_are_still_grouped() -> None:
    model = _model()
    model[0].requires_grad_(False)
    groups = build_param_groups(model, lr=0.1, dis_blocks=1, head=model[5])
    assert id(model[0].weight) in _grouped_ids(groups)
    torch.optim.AdamW(groups)  # a torch optimizer takes the groups as they are


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dis_blocks": -1}, "dis_blocks must be a whole number >= 0, got -1"),
    ({"dis_blocks": 2, "factor": 0.0}, "factor must be > 0"),
    ({"dis_blocks": 2, "factor": -2.6}, "factor must be > 0"),
    ({"lr": -1e-3}, "lr must be >= 0"),
    ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
])
def test_bad_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    model = _model()
    with pytest.raises(ValueError, match=message):
        build_param_groups(model, **{"lr": 0.1, "head": model[5], **kwargs})

"""split_model on plain modules: top-level children as units, contiguous blocks, head errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoft.finetune import split_model


def _plain_model() -> nn.Sequential:
    """Five body children with parameters (and a ReLU without) under a linear head."""
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.LayerNorm(4),
                         nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))


def _ids(params: list[nn.Parameter]) -> list[int]:
    return [id(p) for p in params]


def test_top_level_children_form_contiguous_blocks_from_the_top() -> None:
    model = _plain_model()
    split = split_model(model, 2, head=model[6])
    assert split.n_blocks == 2 and split.requested_blocks == 2
    assert _ids(split.head) == _ids(model[6].parameters())
    # 5 units (children 0, 2, 3, 4, 5): the bottom block gets the extra one.
    assert _ids(split.blocks[1]) == _ids([*model[0].parameters(), *model[2].parameters(),
                                          *model[3].parameters()])
    assert _ids(split.blocks[0]) == _ids([*model[4].parameters(), *model[5].parameters()])
    assert _ids(split.body) == _ids(split.blocks[1] + split.blocks[0])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_every_parameter_is_in_exactly_one_place(n: int) -> None:
    model = _plain_model()
    split = split_model(model, n, head=model[6])
    placed = split.head + [p for block in split.blocks for p in block]
    assert sorted(_ids(placed)) == sorted(_ids(model.parameters()))
    assert split.n_blocks == n
    sizes = [len(block) for block in split.blocks]
    assert max(sizes) - min(sizes) <= 2  # nearly equal: one unit (2 tensors) apart at most


def test_a_parameter_held_directly_by_the_model_is_a_unit() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.body = nn.Linear(2, 2)
            self.head = nn.Linear(2, 1)

    model = Scaled()
    split = split_model(model, 2, head=model.head)
    assert _ids(split.blocks[1]) == [id(model.scale)]
    assert _ids(split.blocks[0]) == _ids(model.body.parameters())


def test_too_many_blocks_are_lowered_with_a_warning() -> None:
    model = _plain_model()
    with pytest.warns(UserWarning, match="n_blocks=9 is more than the 5 body units of "
                                         "Sequential; using 5 blocks"):
        split = split_model(model, 9, head=model[6])
    assert (split.n_blocks, split.requested_blocks) == (5, 9)


def test_zero_blocks_keeps_the_body_whole() -> None:
    model = _plain_model()
    split = split_model(model, 0, head=model[6])
    assert split.blocks == [] and split.n_blocks == 0
    assert len(split.body) == sum(1 for _ in model.parameters()) - 2


def test_a_module_whose_head_cannot_be_found_says_to_pass_head() -> None:
    with pytest.raises(ValueError, match=r"cannot find the head .* of Sequential.*pass head="):
        split_model(_plain_model(), 2)


def test_a_head_outside_the_model_is_refused() -> None:
    with pytest.raises(ValueError, match="head= must be a submodule of the model"):
        split_model(_plain_model(), 2, head=nn.Linear(4, 2))


@pytest.mark.parametrize("n", [-1, 1.5, True, "2"])
def test_bad_block_counts_raise(n: object) -> None:
    model = _plain_model()
    with pytest.raises(ValueError, match="n_blocks must be a whole number >= 0"):
        split_model(model, n, head=model[6])  # type: ignore[arg-type]

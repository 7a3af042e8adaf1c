"""GradualUnfreezer on a small conv net: requires_grad, optimizer updates, BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoft.finetune import GradualUnfreezer, build_param_groups


def _convnet() -> nn.Sequential:
    """Body: [conv, bn] (block 2 of 2), [conv, bn] (block 1); head: the final linear layer."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def _snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in (*module.parameters(), *module.buffers())
            if t.is_floating_point()]


def _changed(module: nn.Module, before: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(_snapshot(module), before, strict=True))


def _train_steps(model: nn.Sequential, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    inputs, targets = torch.randn(8, 3, 6, 6), torch.randint(0, 2, (8,))
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_blocks_thaw_from_the_top_one_per_epoch() -> None:
    model = _convnet()
    unfreezer = GradualUnfreezer(model, frz_blocks=2, head=model[4])
    flags = []
    for epoch in range(4):
        unfreezer.set_epoch(epoch)
        flags.append([all(p.requires_grad for p in model[i].parameters()) for i in (0, 1, 4)])
    assert flags == [[False, False, True], [False, True, True], [True, True, True],
                     [True, True, True]]
    assert unfreezer.n_blocks == 2 and unfreezer.frozen_blocks == 0


def test_frozen_blocks_get_no_update_and_keep_their_batchnorm_statistics() -> None:
    model = _convnet()
    unfreezer = GradualUnfreezer(model, frz_blocks=2, head=model[4])
    optimizer = torch.optim.AdamW(build_param_groups(model, lr=0.1, weight_decay=0.5))
    model(torch.randn(2, 3, 6, 6)).sum().backward()  # stale gradients, cleared by set_epoch
    unfreezer.set_epoch(1)
    model.train()  # after set_epoch, as a loop that calls it each epoch might
    before = [_snapshot(model[i]) for i in (0, 1, 4)]
    _train_steps(model, optimizer)
    # Block 2 (model[0]) frozen: no AdamW step, no weight decay, no running-stat update.
    assert [_changed(model[i], b) for i, b in zip((0, 1, 4), before, strict=True)] == [
        False, True, True]
    assert not model[0][1].training and model[1][1].training
    assert unfreezer.frozen_blocks == 1


def test_thawed_batchnorm_follows_the_model_mode_again() -> None:
    model = _convnet()
    unfreezer = GradualUnfreezer(model, frz_blocks=1, head=model[4])
    model.train()
    unfreezer.set_epoch(0)
    assert not model[1][1].training
    unfreezer.set_epoch(1)
    assert model[1][1].training


def test_parameters_frozen_by_the_user_stay_frozen() -> None:
    model = _convnet()
    model[1][0].bias.requires_grad_(False)
    unfreezer = GradualUnfreezer(model, frz_blocks=2, head=model[4])
    unfreezer.set_epoch(0)
    unfreezer.set_epoch(2)
    assert not model[1][0].bias.requires_grad and model[1][0].weight.requires_grad


def test_batchnorm_without_parameters_follows_its_parent_block() -> None:
    model = _convnet()
    model[1][1] = nn.BatchNorm2d(4, affine=False)
    unfreezer = GradualUnfreezer(model, frz_blocks=2, head=model[4])
    unfreezer.set_epoch(1)
    model.train()
    stats = model[1][1].running_mean.clone()
    model(torch.randn(2, 3, 6, 6))
    assert not torch.equal(stats, model[1][1].running_mean)  # block 1 trains
    unfreezer.set_epoch(0)
    model.train()
    stats = model[1][1].running_mean.clone()
    model(torch.randn(2, 3, 6, 6))
    assert torch.equal(stats, model[1][1].running_mean)


def test_remove_takes_the_hooks_off() -> None:
    model = _convnet()
    unfreezer = GradualUnfreezer(model, frz_blocks=2, head=model[4])
    unfreezer.set_epoch(0)
    unfreezer.remove()
    model.train()
    model(torch.randn(2, 3, 6, 6))
    assert model[0][1].training


def test_zero_blocks_never_freezes_and_needs_no_head() -> None:
    model = _convnet()
    unfreezer = GradualUnfreezer(model, frz_blocks=0)
    unfreezer.set_epoch(0)
    assert unfreezer.n_blocks == 0 and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(("frz_blocks", "epoch", "message"), [
    (-1, 0, "frz_blocks must be a whole number >= 0, got -1"),
    (2, -1, "epoch must be a whole number >= 0, got -1"),
])
def test_bad_arguments_raise_value_error(frz_blocks: int, epoch: int, message: str) -> None:
    model = _convnet()
    with pytest.raises(ValueError, match=message):
        GradualUnfreezer(model, frz_blocks, head=model[4]).set_epoch(epoch)

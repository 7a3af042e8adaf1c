"""L2SP: α/2·‖w_body − w_body⁰‖² + β/2·‖w_head‖², exact values and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoft.finetune import L2SP


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def test_penalty_matches_the_formula() -> None:
    model = _model()
    l2sp = L2SP(model, alpha=0.3, beta=0.2, head=model[1])
    pretrained = [p.detach().clone() for p in model[0].parameters()]
    assert l2sp.penalty().item() == pytest.approx(
        0.2 / 2 * sum(p.pow(2).sum().item() for p in model[1].parameters()))
    with torch.no_grad():
        for p in model[0].parameters():
            p.add_(torch.randn_like(p))
    body = sum((p - p0).pow(2).sum().item()
               for p, p0 in zip(model[0].parameters(), pretrained, strict=True))
    head = sum(p.pow(2).sum().item() for p in model[1].parameters())
    assert l2sp.penalty().item() == pytest.approx(0.3 / 2 * body + 0.2 / 2 * head, rel=1e-6)


def test_gradient_pulls_body_to_pretrained_and_head_to_zero() -> None:
    model = _model()
    l2sp = L2SP(model, alpha=0.5, beta=0.1, head=model[1])
    pretrained = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    l2sp.penalty().backward()
    torch.testing.assert_close(model[0].weight.grad, 0.5 * (model[0].weight - pretrained))
    torch.testing.assert_close(model[1].weight.grad, 0.1 * model[1].weight.detach())


def test_off_is_zero_and_needs_no_head() -> None:
    model = _model()
    penalty = L2SP(model, alpha=0.0, beta=0.0).penalty()
    assert penalty.item() == 0.0 and penalty.shape == ()


@pytest.mark.parametrize(("alpha", "beta", "message"), [
    (-0.1, 0.0, "alpha .* must be >= 0, got -0.1"),
    (0.0, -1.0, "beta .* must be >= 0, got -1.0"),
])
def test_bad_arguments_raise_value_error(alpha: float, beta: float, message: str) -> None:
    model = _model()
    with pytest.raises(ValueError, match=message):
        L2SP(model, alpha, beta, head=model[1])

"""L2-SP regularisation (Li et al., ICML 2018): pull the body towards its pretrained weights.

The penalty α/2·‖w_body − w_body⁰‖² + β/2·‖w_head‖² is added to the loss; w⁰ are the body's
weights when the :class:`L2SP` is made, i.e. the pretrained ones. Use it with an optimizer
without weight decay on the same parameters, or the two pulls add up.

Example::

    l2sp = L2SP(model, alpha=0.01, beta=0.01)     # right after loading, before any step
    for batch in loader:
        loss = criterion(model(batch.x), batch.y) + l2sp.penalty()
        loss.backward()
        ...
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autoft.finetune.blocks import split_model


def _squared_norm(tensors: list[Tensor]) -> Tensor:
    return torch.stack([t.pow(2).sum() for t in tensors]).sum()


class L2SP:
    """The L2-SP penalty of ``model``: α/2·‖w_body − w_body⁰‖² + β/2·‖w_head‖².

    The pretrained body weights w⁰ are copied at construction (only when ``alpha > 0``); make the
    L2SP after moving the model to its device and before training. ``head`` is as in
    :func:`~autoft.finetune.blocks.split_model` (not needed when α = β = 0).

    Example::

        >>> model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
        >>> l2sp = L2SP(model, alpha=2.0, beta=0.5, head=model[1])
        >>> with torch.no_grad():
        ...     _ = model[0].weight.add_(1.0)          # moves each of 4 weights by 1
        ...     _ = model[1].weight.fill_(2.0)         # ‖w_head‖² = 8
        >>> l2sp.penalty().item()                      # 2/2 * 4 + 0.5/2 * 8
        6.0
    """

    def __init__(self, model: nn.Module, alpha: float, beta: float,
                 head: nn.Module | None = None) -> None:
        if not alpha >= 0:
            raise ValueError(f"alpha (l2sp_alpha) must be >= 0, got {alpha}")
        if not beta >= 0:
            raise ValueError(f"beta (l2sp_beta) must be >= 0, got {beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        split = split_model(model, 0, head) if alpha > 0 or beta > 0 else None
        self._body = split.body if split and alpha > 0 else []
        self._anchor = [p.detach().clone() for p in self._body]
        self._head = split.head if split and beta > 0 else []
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._zero = torch.zeros((), device=device)

    def penalty(self) -> Tensor:
        """The penalty for the current weights (differentiable); 0 when α = β = 0."""
        total = self._zero
        if self._body:
            total = total + self.alpha / 2 * _squared_norm(
                [p - p0 for p, p0 in zip(self._body, self._anchor, strict=True)])
        if self._head:
            total = total + self.beta / 2 * _squared_norm(self._head)
        return total

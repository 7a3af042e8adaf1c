"""Gradual unfreezing (design.md): the body thaws one block per epoch, from the top down.

In epoch e (0-based) the head and body blocks k <= e train; blocks k > e are frozen: their
parameters have ``requires_grad`` False and no gradient (so torch optimizers skip them, weight
decay included), and their BatchNorm layers keep their running statistics fixed. From epoch n on
everything trains; ``frz_blocks = 0`` never freezes anything.

Example::

    unfreezer = GradualUnfreezer(model, frz_blocks=2)
    optimizer = torch.optim.AdamW(build_param_groups(model, lr=5e-5, weight_decay=0.01))
    for epoch in range(num_epochs):
        model.train()
        unfreezer.set_epoch(epoch)
        for batch in loader:
            ...
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from autoft.finetune.blocks import ModelSplit, check_count, split_model


def _batchnorms_by_block(model: nn.Module,
                         blocks: list[list[nn.Parameter]]) -> list[tuple[_BatchNorm, int]]:
    """Each BatchNorm layer of the body with its block k.

    A layer belongs to the block of its own parameters; one without (``affine=False``) to the
    block of its nearest ancestor that has parameters, when they all lie in one block.
    """
    block_of = {id(p): k for k, block in enumerate(blocks, start=1) for p in block}
    modules = dict(model.named_modules())
    found: list[tuple[_BatchNorm, int]] = []
    for name, module in modules.items():
        if not isinstance(module, _BatchNorm):
            continue
        owner = name
        while owner and next(modules[owner].parameters(), None) is None:
            owner = owner.rpartition(".")[0]
        ks = {block_of.get(id(p)) for p in modules[owner].parameters()}
        if len(ks) == 1 and None not in ks:
            found.append((module, ks.pop()))
    return found


class GradualUnfreezer:
    """Freezes the body's blocks and thaws one more at each epoch (block 1, the top, first).

    ``frz_blocks`` above the number of body units is lowered with a warning; ``n_blocks`` is the
    effective n and ``split`` the :class:`~autoft.finetune.blocks.ModelSplit` (None when
    ``frz_blocks = 0``). ``head`` is as in :func:`~autoft.finetune.blocks.split_model` (not
    needed when ``frz_blocks = 0``). Put every parameter in the optimizer from the start (as
    :func:`~autoft.finetune.param_groups.build_param_groups` does): frozen ones get no update
    until they thaw.

    Frozen BatchNorm layers stay in eval mode even when ``model.train()`` is called after
    :meth:`set_epoch`: a forward pre-hook puts them back in eval mode before each forward.
    :meth:`remove` takes the hooks off (e.g. before pickling the whole model).

    Example::

        >>> model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
        >>> unfreezer = GradualUnfreezer(model, frz_blocks=2, head=model[2])
        >>> unfreezer.set_epoch(0)
        >>> [m.weight.requires_grad for m in model]      # only the head trains
        [False, False, True]
        >>> unfreezer.set_epoch(1)
        >>> [m.weight.requires_grad for m in model]      # block 1 (model[1]) thawed
        [False, True, True]
    """

    def __init__(self, model: nn.Module, frz_blocks: int, head: nn.Module | None = None) -> None:
        n = check_count("frz_blocks", frz_blocks)
        self.model = model
        self.split: ModelSplit | None = split_model(model, n, head) if n else None
        self._blocks = self.split.blocks if self.split else []
        self._wanted_grad = {id(p): p.requires_grad for block in self._blocks for p in block}
        self._batchnorms = _batchnorms_by_block(model, self._blocks)
        self._held: set[int] = set()
        self._hooks = [bn.register_forward_pre_hook(self._hold_statistics)
                       for bn, _ in self._batchnorms]
        self.epoch: int | None = None

    @property
    def n_blocks(self) -> int:
        """The effective number of blocks that unfreeze (0: nothing is ever frozen)."""
        return len(self._blocks)

    @property
    def frozen_blocks(self) -> int:
        """How many blocks the last :meth:`set_epoch` left frozen."""
        return 0 if self.epoch is None else max(0, self.n_blocks - self.epoch)

    def set_epoch(self, epoch: int) -> None:
        """Freeze blocks k > ``epoch`` and thaw blocks k <= ``epoch`` (0-based epochs).

        A thawed parameter gets back the ``requires_grad`` it had when the unfreezer was made,
        so parameters the user froze stay frozen; a thawed BatchNorm layer follows the model's
        train / eval mode again.
        """
        self.epoch = check_count("epoch", epoch)
        for k, block in enumerate(self._blocks, start=1):
            for param in block:
                if k > epoch:
                    param.requires_grad_(False)
                    param.grad = None
                else:
                    param.requires_grad_(self._wanted_grad[id(param)])
        self._held = {id(bn) for bn, k in self._batchnorms if k > epoch}
        for bn, k in self._batchnorms:
            bn.train(self.model.training and k <= epoch)

    def _hold_statistics(self, module: nn.Module, args: Any) -> None:
        if id(module) in self._held:
            module.eval()

    def remove(self) -> None:
        """Take the BatchNorm hooks off the model; frozen parameters stay as they are."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

"""Optimizer parameter groups: discriminative learning rates and decoupled weight decay.

Discriminative fine-tuning (design.md): the head trains at η and body block k (k = 1 at the top)
at η/factor^k; ``dis_blocks = 0`` trains the whole model at η. Biases and normalisation weights
(every 1-D parameter, and every parameter of a normalisation layer) get no weight decay, as in
BERT's and timm's recipes.

Example::

    groups = build_param_groups(model, lr=5e-5, dis_blocks=3, weight_decay=0.01)
    optimizer = torch.optim.AdamW(groups)
    [(g["name"], g["lr"]) for g in groups]
    # [("head", 5e-05), ("head.no_decay", 5e-05), ("block1", 1.92e-05), ...]
"""

from __future__ import annotations

from typing import Any

from torch import nn

from autoft.finetune.blocks import check_count, split_model

NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm)


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Ids of the parameters exempt from weight decay: 1-D ones and those of norm layers."""
    exempt = {id(p) for p in model.parameters() if p.ndim <= 1}
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            exempt.update(id(p) for p in module.parameters(recurse=False))
    return exempt


def build_param_groups(model: nn.Module, lr: float, dis_blocks: int = 0, factor: float = 2.6,
                       weight_decay: float = 0.0,
                       head: nn.Module | None = None) -> list[dict[str, Any]]:
    """Torch optimizer parameter groups for discriminative fine-tuning with weight decay.

    Every parameter of ``model`` is in exactly one group, frozen ones included (so that gradual
    unfreezing can thaw them later). Each group has ``params``, ``lr``, ``weight_decay``, a
    ``name`` (``head``, ``block<k>`` or, with ``dis_blocks = 0``, ``model``; ``.no_decay`` for
    the part without weight decay) and ``block`` (k; 0 for the head or the whole model).
    ``dis_blocks`` above the number of body units is lowered with a warning (see
    :func:`~autoft.finetune.blocks.split_model`); ``head`` is as there, and not needed when
    ``dis_blocks = 0``.

    Example::

        >>> model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
        >>> groups = build_param_groups(model, lr=1.0, dis_blocks=2, factor=2.0, head=model[2])
        >>> [(g["name"], g["lr"]) for g in groups]  # doctest: +NORMALIZE_WHITESPACE
        [('head', 1.0), ('head.no_decay', 1.0), ('block1', 0.5), ('block1.no_decay', 0.5),
         ('block2', 0.25), ('block2.no_decay', 0.25)]
    """
    dis_blocks = check_count("dis_blocks", dis_blocks)
    if not factor > 0:
        raise ValueError(f"factor must be > 0 (block k trains at lr / factor**k), got {factor}")
    if not lr >= 0:
        raise ValueError(f"lr must be >= 0, got {lr}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if dis_blocks == 0:
        tiers = [("model", 0, lr, list(model.parameters()))]
    else:
        split = split_model(model, dis_blocks, head)
        tiers = [("head", 0, lr, split.head)] + [
            (f"block{k}", k, lr / factor**k, block) for k, block in enumerate(split.blocks, 1)]
    exempt = _no_decay_ids(model)
    groups: list[dict[str, Any]] = []
    for name, k, rate, params in tiers:
        decayed = [p for p in params if id(p) not in exempt]
        plain = [p for p in params if id(p) in exempt]
        for suffix, members, decay in (("", decayed, weight_decay), (".no_decay", plain, 0.0)):
            if members:
                groups.append({"params": members, "lr": rate, "weight_decay": decay,
                               "name": name + suffix, "block": k})
    return groups

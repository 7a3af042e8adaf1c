"""The ULMFiT fine-tuning strategies in PyTorch (design.md, "The strategies, exactly").

Each works with any training loop:

* :func:`stlr_multiplier`, :func:`warmup_linear_multiplier`, :func:`lr_multiplier`: learning-rate
  schedules as multipliers for ``torch.optim.lr_scheduler.LambdaLR``;
* :func:`split_model`: a model as a head on a body of n contiguous blocks;
* :func:`build_param_groups`: discriminative learning rates, weight decay off for biases / norms;
* :class:`GradualUnfreezer`: thaws one body block per epoch, top first;
* :class:`L2SP`: the L2-SP penalty towards the pretrained weights.

Example::

    from autoft.finetune import GradualUnfreezer, build_param_groups, lr_multiplier

    optimizer = torch.optim.AdamW(build_param_groups(model, lr=5e-5, dis_blocks=3,
                                                     weight_decay=0.01))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier("stlr", total_steps=epochs * len(loader)))
    unfreezer = GradualUnfreezer(model, frz_blocks=2)
    for epoch in range(epochs):
        model.train()
        unfreezer.set_epoch(epoch)
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
"""

from autoft.finetune.blocks import ModelSplit, split_model
from autoft.finetune.l2sp import L2SP
from autoft.finetune.param_groups import build_param_groups
from autoft.finetune.schedules import lr_multiplier, stlr_multiplier, warmup_linear_multiplier
from autoft.finetune.unfreezing import GradualUnfreezer

__all__ = [
    "L2SP",
    "GradualUnfreezer",
    "ModelSplit",
    "build_param_groups",
    "lr_multiplier",
    "split_model",
    "stlr_multiplier",
    "warmup_linear_multiplier",
]

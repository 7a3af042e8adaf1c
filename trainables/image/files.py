"""Image files in ImageFolder layout (``root/<class>/<image>``): scanned and checked once.

:func:`scan_folder` lists the images of a folder with torchvision's own ImageFolder helpers,
accepting every file extension Pillow can open (torchvision's list lacks ``.gif``), and drops the
files Pillow cannot decode, with one warning that counts them (``data.train: skipped 2 of 40 image
files of ROOT that cannot be decoded (first: a/3.jpg, ...)``), so a corrupt file never crashes a
trial and is never dropped silently. A folder that is missing, has fewer than 2 class folders, a
class folder the training data lacks, no image file, or no image that decodes is an
:class:`~autoft.core.errors.InputError` naming the folder and, where the caller gives it, the
config key (``data.train`` or ``data.eval``). The result is plain ``(path, class id)`` pairs:
small and picklable for Ray's object store; every image is converted to RGB.
:class:`SeededImageFiles` is the Dataset of the streaming loader: several such lists with their
transforms, each image transformed under its own seed.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import find_classes, make_dataset

from autoft.core.errors import InputError

Item = tuple[str, int]

#: Size requested from JPEG's reduced-scale decoder when only checking that a file decodes.
CHECK_DRAFT_SIZE = (64, 64)


def image_extensions() -> tuple[str, ...]:
    """Every file extension Pillow has a decoder for (``.jpg``, ``.png``, ``.gif``, ...)."""
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items()
                        if fmt in Image.OPEN))


def _where(root: Path, key: str | None) -> str:
    """The start of a message: the folder, then the config key that names it when known."""
    return f"{root}: {key}" if key else str(root)


def class_names(root: Path, key: str = "data.train") -> list[str]:
    """The class folders of ``root`` (the training data, config key ``key``) in sorted order;
    fewer than 2 is an error."""
    where = _where(root, key)
    if not root.is_dir():
        raise InputError(f"{where}: not a folder; an image dataset is a folder of class folders")
    try:
        names, _ = find_classes(root)
    except FileNotFoundError:
        names = []
    if len(names) < 2:
        raise InputError(f"{where}: an ImageFolder needs at least 2 class folders, found "
                         f"{len(names)}{': ' + names[0] if names else ''}")
    return names


def scan_folder(root: Path, classes: Sequence[str], key: str | None = None) -> list[Item]:
    """The decodable images of ``root``'s class folders, labelled by their index in
    ``classes``; a class folder outside ``classes`` is an error. ``key`` (``data.train``,
    ``data.eval``) names the folder's config key in errors and in the warning."""
    where = _where(root, key)
    if not root.is_dir():
        raise InputError(f"{where}: not a folder; an image dataset is a folder of class folders")
    try:
        found, _ = find_classes(root)
    except FileNotFoundError:
        raise InputError(f"{where}: no class folders") from None
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise InputError(f"{where}: class folder(s) {', '.join(unknown)} never occur in the "
                         f"training data (classes: {', '.join(classes)})")
    index = {name: i for i, name in enumerate(classes)}
    try:
        items = make_dataset(root, {name: index[name] for name in found},
                             extensions=image_extensions(), allow_empty=True)
    except FileNotFoundError as exc:
        raise InputError(f"{where}: {exc}") from None
    if not items:
        raise InputError(f"{where}: the dataset is empty (no image files in its class folders)")
    return _decodable(items, root, key)


def image_files(path: Path, key: str) -> list[str]:
    """The decodable image files to predict: ``path`` itself, or every image file under the
    folder ``path`` (class folders or not), in sorted order; ``key`` names ``path`` in
    messages."""
    if path.is_file():
        found = [str(path)]
        root = path.parent
    elif path.is_dir():
        extensions = image_extensions()
        found = sorted(str(p) for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in extensions)
        root = path
    else:
        raise InputError(f"{path}: {key}: no such file or folder")
    if not found:
        raise InputError(f"{path}: {key}: no image files (extensions Pillow opens, such as "
                         ".jpg and .png)")
    return [file for file, _ in _decodable([(file, -1) for file in found], root, key)]


def _decodes(path: str) -> bool:
    try:
        with Image.open(path) as image:
            image.draft("RGB", CHECK_DRAFT_SIZE)
            image.load()
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _decodable(items: list[Item], root: Path, key: str | None) -> list[Item]:
    """The items whose file decodes; the others are skipped with one warning that counts them."""
    decodes = [_decodes(path) for path, _ in items]
    good = [item for item, ok in zip(items, decodes, strict=True) if ok]
    bad = [Path(os.path.relpath(path, root)).as_posix()
           for (path, _), ok in zip(items, decodes, strict=True) if not ok]
    if not good:
        raise InputError(f"{_where(root, key)}: none of the {len(items)} image files can be "
                         f"decoded (first: {bad[0]})")
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        warnings.warn(f"{key + ': ' if key else ''}skipped {len(bad)} of {len(items)} image "
                      f"files of {root} that cannot be decoded (first: {shown})", UserWarning,
                      stacklevel=3)
    return good


def load_rgb(path: str) -> Image.Image:
    """An image file as RGB (palette images with transparency go through RGBA first)."""
    with Image.open(path) as image:
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        return image.convert("RGB")


#: A key of :class:`SeededImageFiles`: (split, index in the split, seed or None).
Key = tuple[int, int, int | None]


class SeededImageFiles(Dataset):
    """``(transform(image), label)`` for keys ``(split, index, seed)``: item ``index`` of the
    ``split``-th ``(items, transform)`` pair, its transform run with Python's and torch's
    global generators seeded with ``seed`` and restored afterwards (None: left as they are).

    An image's augmentation so depends on its seed alone: the same in the main process or in a
    DataLoader worker, with any number of workers, persistent or not, and after a resume."""

    def __init__(self, splits: Sequence[tuple[Sequence[Item],
                                              Callable[[Image.Image], torch.Tensor]]]):
        self.splits = splits

    def __len__(self) -> int:
        return sum(len(items) for items, _ in self.splits)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int]:
        split, index, seed = key
        items, transform = self.splits[split]
        path, label = items[index]
        image = load_rgb(path)
        if seed is None:
            return transform(image), label
        python_state, torch_state = random.getstate(), torch.get_rng_state()
        random.seed(seed)
        torch.default_generator.manual_seed(seed)  # the CPU's only: CUDA's stays the loop's
        try:
            return transform(image), label
        finally:
            random.setstate(python_state)
            torch.set_rng_state(torch_state)


class KeyBatches:
    """A DataLoader's ``batch_sampler`` whose batches of keys are set before each pass
    (a persistent loader reads its sampler again at every ``iter``)."""

    def __init__(self) -> None:
        self.batches: list[list[Key]] = []

    def __iter__(self) -> Iterator[list[Key]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

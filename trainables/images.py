"""Image files in ImageFolder layout (``root/<class>/<image>``): scanned and checked once.

:func:`scan_folder` lists the images of a folder with torchvision's own ImageFolder helpers,
accepting every file extension Pillow can open (torchvision's list lacks ``.gif``), and drops the
files Pillow cannot decode, with one warning that counts them, so a corrupt file never crashes a
trial. The result is plain ``(path, class id)`` pairs: small and picklable for Ray's object store.
:class:`ImageFiles` is the Dataset over such pairs; every image is converted to RGB.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
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


def class_names(root: Path) -> list[str]:
    """The class folders of ``root`` in sorted order; fewer than 2 is an error."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; an image dataset is a folder of class folders")
    try:
        names, _ = find_classes(root)
    except FileNotFoundError:
        names = []
    if len(names) < 2:
        raise InputError(f"{root}: an ImageFolder needs at least 2 class folders, found "
                         f"{len(names)}{': ' + names[0] if names else ''}")
    return names


def scan_folder(root: Path, classes: Sequence[str]) -> list[Item]:
    """The decodable images of ``root``'s class folders, labelled by their index in
    ``classes``; a class folder outside ``classes`` is an error."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; an image dataset is a folder of class folders")
    try:
        found, _ = find_classes(root)
    except FileNotFoundError:
        raise InputError(f"{root}: no class folders") from None
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise InputError(f"{root}: class folder(s) {', '.join(unknown)} never occur in the "
                         f"training data (classes: {', '.join(classes)})")
    index = {name: i for i, name in enumerate(classes)}
    try:
        items = make_dataset(root, {name: index[name] for name in found},
                             extensions=image_extensions(), allow_empty=True)
    except FileNotFoundError as exc:
        raise InputError(f"{root}: {exc}") from None
    if not items:
        raise InputError(f"{root}: the dataset is empty (no image files in its class folders)")
    return _decodable(items, root)


def _decodes(path: str) -> bool:
    try:
        with Image.open(path) as image:
            image.draft("RGB", CHECK_DRAFT_SIZE)
            image.load()
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _decodable(items: list[Item], root: Path) -> list[Item]:
    decodes = [_decodes(path) for path, _ in items]
    good = [item for item, ok in zip(items, decodes, strict=True) if ok]
    bad = [Path(path).name for (path, _), ok in zip(items, decodes, strict=True) if not ok]
    if bad:
        warnings.warn(f"{root}: skipped {len(bad)} of {len(items)} image files that cannot be "
                      f"decoded ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})",
                      UserWarning, stacklevel=3)
    if not good:
        raise InputError(f"{root}: none of the {len(items)} image files can be decoded")
    return good


def load_rgb(path: str) -> Image.Image:
    """An image file as RGB (palette images with transparency go through RGBA first)."""
    with Image.open(path) as image:
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        return image.convert("RGB")


class ImageFiles(Dataset):
    """``(transform(image), label)`` for ``(path, label)`` items."""

    def __init__(self, items: Sequence[Item], transform: Callable[[Image.Image], torch.Tensor]):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        return self.transform(load_rgb(path)), label

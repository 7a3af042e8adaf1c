"""A model as a head on a body, and the body as n contiguous blocks (design.md, "Blocks").

The *head* is the newly initialised classifier; the *body* is everything else, the pretrained
part. The body is a sequence of units in input-to-output order:

* timm models: the groups of the model's own ``group_matcher`` (stem, then each block), as
  ``timm.models.group_parameters`` forms them;
* transformers models: every element of the model's outermost ``ModuleList`` s (the encoder
  layers) is a unit, and each run of other parameters between them is one unit (the embeddings
  below, the pooler above);
* any other module: its top-level children.

The units are split into n contiguous blocks of nearly equal size (the bottom blocks get the
extra unit when the count does not divide); block 1 is at the top, next to the head.

Example::

    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    split = split_model(model, n_blocks=3)
    split.head          # classifier.weight, classifier.bias
    split.blocks[0]     # block 1: the top encoder layers and the pooler
    split.blocks[-1]    # block 3: the embeddings and the bottom layers
"""

from __future__ import annotations

import numbers
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

NamedParameters = list[tuple[str, nn.Parameter]]


@dataclass(frozen=True)
class ModelSplit:
    """The head's parameters and the body's, the latter also split into blocks.

    ``body`` lists the body's parameters in input-to-output order; ``blocks[0]`` is block 1 (the
    top, k = 1) and ``blocks[-1]`` block n (the bottom). ``n_blocks`` is the effective n, which is
    lower than ``requested_blocks`` when the body has fewer units than requested.
    """

    head: list[nn.Parameter]
    body: list[nn.Parameter]
    blocks: list[list[nn.Parameter]]
    requested_blocks: int

    @property
    def n_blocks(self) -> int:
        """The number of blocks actually formed."""
        return len(self.blocks)


def check_count(name: str, value: int) -> int:
    """``value`` as an int, or a ValueError naming ``name`` unless it is a whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(value)


def _is_timm(model: nn.Module) -> bool:
    return callable(getattr(model, "group_matcher", None)) and callable(
        getattr(model, "get_classifier", None))


def _is_transformers(model: nn.Module) -> bool:
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


def _head_modules(model: nn.Module, head: nn.Module | None) -> list[nn.Module]:
    if head is not None:
        if not any(module is head for module in model.modules()):
            raise ValueError(f"head= must be a submodule of the model; {type(head).__name__} "
                             f"is not part of {type(model).__name__}")
        return [head]
    if _is_timm(model):
        found = model.get_classifier()
        return list(found) if isinstance(found, tuple) else [found]
    if _is_transformers(model):
        for name in ("classifier", "score"):
            module = getattr(model, name, None)
            if isinstance(module, nn.Module):
                return [module]
    raise ValueError(f"cannot find the head (the new classifier) of {type(model).__name__}: "
                     "only transformers models (classifier / score) and timm models "
                     "(get_classifier()) are recognised; pass head=<the classifier module>")


def _distinct_parameters(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    found: dict[int, nn.Parameter] = {}
    for module in modules:
        found.update((id(p), p) for p in module.parameters())
    return list(found.values())


def _runs(named: NamedParameters, key: Callable[[str], object]) -> list[NamedParameters]:
    """Consecutive parameters with the same key, one list per run."""
    units: list[NamedParameters] = []
    previous: object = object()
    for name, param in named:
        current = key(name)
        if not units or current != previous:
            units.append([])
        units[-1].append((name, param))
        previous = current
    return units


def _timm_units(model: nn.Module, named: NamedParameters) -> list[NamedParameters]:
    from timm.models import group_parameters

    by_name = dict(named)
    groups = group_parameters(model, model.group_matcher())
    units = [[(name, by_name[name]) for name in names if name in by_name]
             for _, names in sorted(groups.items())]
    return [unit for unit in units if unit]


def _layer_prefixes(model: nn.Module) -> list[str]:
    """``"encoder.layer.3."``: one prefix per element of each outermost ``ModuleList``."""
    prefixes: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and not any(
                f"{name}.".startswith(prefix) for prefix in prefixes):
            prefixes.extend(f"{name}.{index}." for index in range(len(module)))
    return prefixes


def _transformers_units(model: nn.Module, named: NamedParameters) -> list[NamedParameters]:
    prefixes = _layer_prefixes(model)
    return _runs(named, lambda name: next((p for p in prefixes if name.startswith(p)), None))


def _body_units(model: nn.Module, head: list[nn.Parameter]) -> list[NamedParameters]:
    """The body's units in input-to-output order, each a list of (name, parameter)."""
    head_ids = {id(p) for p in head}
    named = [(name, p) for name, p in model.named_parameters() if id(p) not in head_ids]
    if _is_timm(model):
        return _timm_units(model, named)
    if _is_transformers(model):
        return _transformers_units(model, named)
    return _runs(named, lambda name: name.split(".", 1)[0])


def _contiguous_blocks(units: list[NamedParameters], n: int) -> list[list[nn.Parameter]]:
    """``n`` contiguous blocks of nearly equal unit count, top block first."""
    size, extra = divmod(len(units), n)
    blocks: list[list[nn.Parameter]] = []
    start = 0
    for index in range(n):
        stop = start + size + (1 if index < extra else 0)
        blocks.append([p for unit in units[start:stop] for _, p in unit])
        start = stop
    return blocks[::-1]


def split_model(model: nn.Module, n_blocks: int, head: nn.Module | None = None) -> ModelSplit:
    """Split ``model`` into its head and ``n_blocks`` contiguous body blocks (block 1 on top).

    ``head=None`` finds the head of a transformers model (``classifier`` / ``score``) or of a
    timm model (``get_classifier()``); for any other model pass the classifier module as
    ``head=``. When ``n_blocks`` exceeds the number of body units it is lowered to that number
    with a warning; ``ModelSplit.n_blocks`` is the effective n. ``n_blocks = 0`` forms no
    blocks (``ModelSplit.body`` still lists the body).

    Example::

        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2))
        >>> split = split_model(model, n_blocks=2, head=model[3])
        >>> [len(block) for block in split.blocks]     # block 1: model[2]; block 2: model[0]
        [2, 2]
    """
    requested = check_count("n_blocks", n_blocks)
    head_params = _distinct_parameters(_head_modules(model, head))
    units = _body_units(model, head_params)
    n = requested
    if n > len(units):
        n = len(units)
        warnings.warn(f"n_blocks={requested} is more than the {len(units)} body units of "
                      f"{type(model).__name__}; using {n} blocks", UserWarning, stacklevel=2)
    body = [p for unit in units for _, p in unit]
    blocks = _contiguous_blocks(units, n) if n else []
    return ModelSplit(head=head_params, body=body, blocks=blocks,
                      requested_blocks=requested)

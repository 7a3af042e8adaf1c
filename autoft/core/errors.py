"""The one exception type for bad user input, and the one way to word a schema error.

Anything a user can fix by editing a file or a flag raises :class:`InputError`; the CLI prints
its message on one line and exits with status 2, without a traceback.
"""

from __future__ import annotations

from pydantic import ValidationError


class InputError(ValueError):
    """Bad input: a config, space, data file or model that cannot be used as given."""


def validation_message(where: str, error: ValidationError) -> str:
    """pydantic's first complaint as one line: ``where: key.path: what is wrong (got value)``.

    >>> from pydantic import BaseModel
    >>> class Epochs(BaseModel):
    ...     num_epochs: int = 3
    >>> try:
    ...     Epochs.model_validate({"num_epochs": 2.5})
    ... except ValidationError as exc:
    ...     print(validation_message("x", exc))
    x: num_epochs: Input should be a valid integer, got a number with a fractional part (got 2.5)
    """
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if not key:  # a rule across fields, whose message names them
        return f"{where}: {first.get('ctx', {}).get('error', first['msg'])}"
    if first["type"] == "extra_forbidden":
        return f"{where}: {key}: unknown key"
    got = first.get("input")
    shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) else ""
    return f"{where}: {key}: {first['msg']}{shown}"

"""Environment variables set for what a block of code starts, and put back afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` inside the block, for the processes started there; each
    variable is restored (or removed) afterwards, so later child processes do not inherit it.

    >>> with scoped_environ({"AUTOFT_EXAMPLE": "1"}):
    ...     os.environ["AUTOFT_EXAMPLE"]
    '1'
    >>> "AUTOFT_EXAMPLE" in os.environ
    False
    """
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

"""The lock every benchmark process on this machine takes around a shared results file."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the machine-wide lock ``name`` (``summary``, ``runs``) while the block runs."""
    with (Path(tempfile.gettempdir()) / f"autoft_benchmarks_{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

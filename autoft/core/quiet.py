"""What the console shows of the libraries autoft drives: their warnings on one line each, and
none of their routine notices.

transformers reports every load of a model with a new head (``... LOAD REPORT``, a table of the
``classifier.*`` weights it initialised, "Consider training on your downstream task": about 10
lines a trial) and draws a "Loading weights" progress bar; datasets and the Hub draw theirs. A
fine-tune with a new head is what autoft does, so that is no news: unless ``-v`` asks for them,
:func:`quiet` turns them off through the libraries' own environment variables, set before they
are imported. The embedded Ray's workers inherit them from the driver; the nodes of a cluster
take theirs from where they were started.

Python prints a warning as its source location, the warning and the source line; autoft prints
:func:`one_line_warning`'s single line instead, in the driver and in every trial.
"""

from __future__ import annotations

import os
import warnings

#: The libraries' own switches for their routine notices and progress bars.
QUIET_ENV: dict[str, str] = {"TRANSFORMERS_VERBOSITY": "error",
                             "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                             "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                     lineno: int, line: str | None = None) -> str:
    """A warning as ``UserWarning: what happened`` (``warnings.formatwarning``'s signature).

    >>> one_line_warning(UserWarning("data.train: skipped 2 lines"), UserWarning, "x.py", 3)
    'UserWarning: data.train: skipped 2 lines'
    """
    return f"{category.__name__}: {message}"


def one_line_warnings() -> None:
    """Format every warning of this process on one line."""
    warnings.formatwarning = one_line_warning


def quiet(verbose: bool) -> None:
    """One line per warning; without ``verbose`` also the libraries' notices and progress bars
    off (a value the environment already holds wins)."""
    one_line_warnings()
    if not verbose:
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)

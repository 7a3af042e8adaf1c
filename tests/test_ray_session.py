"""The embedded Ray of ``autoft search``: its own, and running trials at the command's priority."""

from __future__ import annotations

import os

import pytest
import ray

from autoft.tuning.driver import ray_session

pytestmark = pytest.mark.slow


def test_the_embedded_ray_runs_work_at_the_commands_priority() -> None:
    @ray.remote
    def niceness() -> int:
        return os.nice(0)

    with ray_session(None):
        assert ray.get(niceness.remote()) == os.nice(0)
    assert not ray.is_initialized()

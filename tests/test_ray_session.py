"""The embedded Ray of ``autoft search``: its own, running trials at the command's priority, its
workers started with one malloc arena."""

from __future__ import annotations

import os
import time

import pytest
import ray

from autoft.core.errors import InputError
from autoft.tuning.embedded_ray import (
    EMBEDDED_RAY_ENV,
    embedded_ray_started_early,
    ray_session,
    start_in_background,
)

pytestmark = pytest.mark.slow


def test_the_embedded_ray_runs_work_at_the_commands_priority() -> None:
    @ray.remote
    def niceness() -> int:
        return os.nice(0)

    with ray_session(None):
        assert ray.get(niceness.remote()) == os.nice(0)
    assert not ray.is_initialized()


def test_the_embedded_rays_workers_start_with_one_malloc_arena() -> None:
    """glibc reads ``MALLOC_ARENA_MAX`` from the environment a process started with
    (``/proc/self/environ``), not from ``os.environ`` set later, which a runtime_env would do."""

    @ray.remote
    def environment_at_start() -> dict[str, str]:
        with open("/proc/self/environ", "rb") as environ:
            pairs = [item.decode().split("=", 1) for item in environ.read().split(b"\0") if item]
        return dict(pair for pair in pairs if len(pair) == 2)

    before = dict(os.environ)
    expected = before.get("MALLOC_ARENA_MAX", EMBEDDED_RAY_ENV["MALLOC_ARENA_MAX"])
    with ray_session(None):
        assert ray.get(environment_at_start.remote()).get("MALLOC_ARENA_MAX") == expected
    # The command's own environment, which its later child processes inherit, is unchanged.
    assert {name: os.environ.get(name) for name in EMBEDDED_RAY_ENV} == {
        name: before.get(name) for name in EMBEDDED_RAY_ENV}



def test_a_ray_started_in_the_background_is_taken_over_and_outlives_its_thread() -> None:
    """Ray ties its processes to the thread that started them; the session must keep them."""
    start_in_background()
    time.sleep(1)
    with ray_session(None):
        assert ray.get(ray.remote(lambda: 1).remote()) == 1
        assert ray.cluster_resources().get("CPU", 0) > 0
    assert not ray.is_initialized()


def test_a_command_that_fails_before_its_session_stops_the_early_ray() -> None:
    with pytest.raises(InputError), embedded_ray_started_early(None):
        raise InputError("the config's space is malformed")
    assert not ray.is_initialized()

"""A stopped trial's training thread has ended when its actor's ``cleanup`` returns."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
from ray import tune
from ray.train._internal.storage import StorageContext
from ray.tune.trainable.function_trainable import wrap_function

from autoft.tuning.trial_actor import trial_class


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # Ray's trial storage places the trial's working folder in the Ray session's folder.
    ray.init(address="local", num_cpus=1, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


class SlowToFree:
    """Stands for the trial's torch tensors: freeing them takes a while."""

    freed: list[float] = []

    def __del__(self) -> None:
        time.sleep(0.5)
        SlowToFree.freed.append(time.monotonic())


def three_epochs(config: dict) -> None:
    held = SlowToFree()  # noqa: F841 (freed as the thread unwinds from its stopped report)
    for epoch in range(3):
        tune.report({"epoch": epoch})


@pytest.mark.parametrize("joins", [True, False])
def test_a_stopped_trial_waits_for_its_thread_to_free_its_frames(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, joins: bool) -> None:
    # Ray's trainable moves the process into the trial's working folder: back after the test,
    # or later searches' workers start there and cannot import the tests' trainables.
    monkeypatch.chdir(tmp_path)
    function = wrap_function(three_epochs)
    trainable = (trial_class(function) if joins else function)(
        config={}, storage=StorageContext(storage_path=str(tmp_path),
                                          experiment_dir_name="exp", trial_dir_name="trial"))
    SlowToFree.freed.clear()
    assert trainable.train()["epoch"] == 0
    trainable.stop()
    stopped = time.monotonic()
    if joins:
        assert SlowToFree.freed and SlowToFree.freed[0] <= stopped
    else:  # Ray's own: the thread is still freeing when stop returns (what this class mends)
        assert not SlowToFree.freed

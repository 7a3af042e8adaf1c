"""The Ray a command runs its search on: a cluster it joins, or an embedded local Ray that is
the command's alone, started early and stopped without waiting where the command ends anyway.

Starting a local Ray takes 2.3-3.4 s on 2 cores, most of it the driver waiting for the GCS, the
raylet and their helper processes to come up (``ray.init`` polls for the node to register),
which the command's own start-up can use: :func:`start_in_background` begins it in a thread as
soon as the config says no cluster is named, while the command imports torch, Ray Tune and
MLflow and prepares the data; :func:`ray_session` then takes it over
(benchmarks/results/overhead.md).

Only this module calls ``ray.init``; nothing here imports Ray before it is needed, so the CLI
can call :func:`start_in_background` before its heavy imports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from autoft.core.environ import scoped_environ
from autoft.core.errors import InputError

#: The environment the embedded Ray's processes start with (a value already set wins).
#: ``RAY_worker_niceness``: trials run at the command's own priority, not Ray's default nice 15
#: below the driver and Ray's daemons. ``MALLOC_ARENA_MAX``: Ray Tune runs a trial in a thread
#: of its worker, and glibc gives such a thread a malloc arena of its own that hands freed
#: memory back to the kernel, so every training step page-faulted its buffers in again and the
#: same ``fit`` ran 1.3-2x slower in a trial than in a main thread (benchmarks/results/
#: overhead.md). glibc reads it when a process starts, so it is set before Ray starts its
#: processes; the nodes of a cluster get it from where they are started (docker/Dockerfile).
EMBEDDED_RAY_ENV: dict[str, str] = {"RAY_worker_niceness": "0", "MALLOC_ARENA_MAX": "1"}
#: The logger of Ray's notices about token authentication when it starts a local cluster.
RAY_AUTH_NOTICES = "ray._private.authentication.authentication_token_setup"
#: Ray's notice that ``ray.init`` outside the main thread set no SIGTERM handler (this module
#: sets the same one from the main thread).
NO_SIGTERM_HANDLER = "SIGTERM handler is not set"

#: The embedded Ray being started in the background, until :func:`ray_session` takes it.
_starting: Future[None] | None = None
#: Set once the Ray started in the background is shut down (its thread may end then).
_stopped = threading.Event()


class _DropNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(NO_SIGTERM_HANDLER)


def _init(address: str | None) -> None:
    """``ray.init`` for ``address`` (None: an embedded local Ray), its errors as one line."""
    import ray

    # Epoch checkpoints of short trials snapshot the experiment often; that is expected here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address is None:
        # Ray turns token authentication on for every new local cluster and says so each time
        # ("Token authentication is enabled for this Ray cluster..."): routine, not news.
        logging.getLogger(RAY_AUTH_NOTICES).setLevel(logging.ERROR)
    # A value already set wins; the nodes of a cluster take theirs from where they started.
    embedded = {} if address is not None else {
        name: os.environ.get(name, value) for name, value in EMBEDDED_RAY_ENV.items()}
    try:
        with scoped_environ(embedded):
            ray.init(address=address or "local", include_dashboard=False,
                     configure_logging=False, log_to_driver=True)
    except ConnectionError as exc:
        raise InputError(
            f"ray.address: cannot join the Ray cluster at {address} ({exc}); a cluster started "
            "with `ray start` needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN, "
            "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token") from None


def start_in_background() -> None:
    """Begin starting this command's embedded Ray in a thread (once); call it from the main
    thread. :func:`ray_session` with no address waits for it and owns it from then on."""
    global _starting
    if _starting is not None or "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return
    # What ray.init sets in the main thread only: SIGTERM ends the command through SystemExit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    logging.getLogger("ray._private.worker").addFilter(_DropNotice())
    future: Future[None] = Future()

    def start() -> None:
        try:
            _init(None)
        except BaseException as exc:  # noqa: BLE001 (handed to ray_session, which raises it)
            future.set_exception(exc)
            return
        future.set_result(None)
        # Ray ties its processes' lives to the thread that started them (Linux's parent-death
        # signal goes by thread): this one lives until Ray is shut down.
        _stopped.wait()

    _stopped.clear()
    threading.Thread(target=start, name="autoft-ray", daemon=True).start()
    _starting = future


@contextmanager
def embedded_ray_started_early(address: str | None) -> Iterator[None]:
    """Around a command that runs a search: with no ``address``, the embedded Ray is started in
    the background at once; one that no :func:`ray_session` took over when the command ends
    (it failed before) is shut down."""
    if address is None:
        start_in_background()
    try:
        yield
    finally:
        if _starting is not None:
            with contextlib.suppress(Exception):  # a start that failed has nothing to stop
                _take_started()
            _shutdown()


def _shutdown() -> None:
    import ray

    ray.shutdown()
    _stopped.set()


def _take_started() -> bool:
    """Wait for the background start, if one was begun; whether one was."""
    global _starting
    starting, _starting = _starting, None
    if starting is None:
        return False
    starting.result()
    return True


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join ``address``, or take over (else start) an embedded local Ray that is this command's
    alone; shut it down when done.

    ``address="local"`` matters: a plain ``ray.init()`` joins whatever cluster an earlier
    ``ray start`` left in Ray's temp dir, even a dead one. The embedded Ray's processes start
    with :data:`EMBEDDED_RAY_ENV` (Ray's workers are started by its node's processes, which
    keep it). A Ray this command did not start (``ray.init`` by the caller) is used and left
    running.
    """
    import ray

    started = address is None and _take_started()
    if not started:
        if ray.is_initialized():
            yield
            return
        _init(address)
    try:
        yield
    finally:
        _shutdown()

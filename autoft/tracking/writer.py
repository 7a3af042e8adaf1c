"""A background MLflow writer that never blocks its caller and never loses an operation.

The search driver must not wait on MLflow: one call to a tracking server that is down blocks for
minutes inside the client's own retries. :class:`MlflowWriter` takes each operation (create a run,
log params / metrics / tags, terminate a run, upload artifacts), commits it to a local
:class:`~autoft.tracking.spool.Spool` (SQLite, in ``<state_dir>/tracking/``) and returns; one
background thread applies the operations in order through :class:`mlflow.tracking.MlflowClient`
and marks each one applied.

Memory stays bounded: the thread reads at most ``max_queue`` operations from the spool at a
time. While the store fails the writer warns once, retries with back-off and lets the spool grow;
when the store answers again it says so and goes on in order. A writer started over the same
folder (``autoft resume`` after a crash) sends what the previous process could not. Replays are
idempotent: a run is looked up by its creation tags before it is created, metrics keep the
timestamp they were logged with (MLflow ignores an identical metric row), params and tags are
re-set to the same values.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from autoft.tracking.spool import Spool

log = logging.getLogger(__name__)

# A tracking server that is down must fail a call at once, not after minutes of the client's own
# retries: the writer retries by itself. Ending a run must not print its URL into the driver's
# console from the background. Set before any client exists; a user's own value wins.
CLIENT_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                       "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}

TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
#: Tags of an experiment this writer creates: MLflow 3's UI shows it as model training, not as
#: a GenAI app (design.md, "Tracking layout").
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
SPOOL_FILE = "spool.sqlite3"


class WriterClosedError(RuntimeError):
    """An operation was given to a writer after :meth:`MlflowWriter.close`."""


class _Rejected(Exception):
    """An operation that can never succeed (its run was never created)."""


def tracking_dir(state_dir: str | os.PathLike[str]) -> Path:
    """Where a writer over ``state_dir`` keeps its spool."""
    return Path(state_dir) / "tracking"


def default_artifact_location(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite store go beside the database, not into the current directory.

    MLflow's default for a database store is ``./mlruns``, relative to wherever the driver was
    started; a server (``http://``) picks its own location, so None there.
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return (Path(tracking_uri[len(prefix):]).parent / "mlartifacts").resolve().as_uri()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {_truncate(first_line, 300)}"


def _is_transient(exc: BaseException) -> bool:
    """Whether the operation should wait in the spool: the store is down, busy, timing out or
    refusing this client (401, 403: credentials can be fixed and ``autoft sync`` run), or the
    address is not an MLflow server (404 on its REST API). Only an operation MLflow itself
    rejects (a bad value, a run that does not exist) is dropped."""
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return (status >= 500 or status in (401, 403, 408, 429)
                or exc.error_code == "ENDPOINT_NOT_FOUND")
    return isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)


def _tag_filter(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    return (items[start:start + size] for start in range(0, len(items), size))


class MlflowWriter:
    """Applies MLflow operations in order on a background thread; see the module docstring.

    Runs are named by logical keys chosen by the caller (``"parent"``, a trial id); the MLflow
    run id behind a key is known once its creation has been applied (:meth:`run_id`). Every
    method except :meth:`run_id`, :meth:`flush` and :meth:`close` only commits to the spool and
    returns at once, whether or not the store answers.

    Args:
        tracking_uri: the MLflow tracking URI (``sqlite:///...``, ``http://host:5000``).
        experiment_name: the experiment every run goes into; created when missing.
        state_dir: the folder that owns this tracking (the search's experiment folder); the
            spool lives in ``state_dir/tracking``. One writer per folder at a time: a second
            one raises :class:`RuntimeError` while the first is open.
        max_queue: operations read from the spool into memory at a time.
        retry_initial_s: first back-off after a failed call; doubles up to ``retry_max_s``.
        retry_max_s: longest back-off, i.e. how late a recovered store is noticed.
        artifact_location: artifact root of the experiment if this writer creates it (default:
            :func:`default_artifact_location`).
    """

    def __init__(self, tracking_uri: str, experiment_name: str,
                 state_dir: str | os.PathLike[str], *, max_queue: int = 1000,
                 retry_initial_s: float = 0.5, retry_max_s: float = 15.0,
                 artifact_location: str | None = None) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        for name, value in CLIENT_ENV_DEFAULTS.items():
            os.environ.setdefault(name, value)
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.folder = tracking_dir(state_dir)
        self.spool_path = self.folder / SPOOL_FILE
        self._max_queue = max_queue
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._artifact_location = artifact_location or default_artifact_location(tracking_uri)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._spool = Spool(self.spool_path)  # raises SpoolInUseError, a RuntimeError
        if left := self._spool.unsent():
            log.info("MLflow tracking: %d operation(s) left in %s by an earlier run will be sent"
                     " to %s", left, self.spool_path, tracking_uri)
        # Owned by the background thread:
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._in_outage = False
        # Signals new operations, applied operations and close(); guards _stop_at.
        self._cond = threading.Condition()
        self._stop_at: float | None = None  # close() deadline (monotonic); set: closed
        self._thread = threading.Thread(target=self._work, name="autoft-mlflow-writer",
                                        daemon=True)
        self._thread.start()

    # The operations (all return at once).

    def create_run(self, key: str, *, run_name: str, tags: Mapping[str, str],
                   parent_key: str | None = None) -> None:
        """Create the run ``key`` (nested under ``parent_key`` if given), unless it exists.

        ``tags`` identify the run: a run of the experiment that already carries all of them
        (and the same parent) is reused instead of creating a second one, so a replay never
        duplicates a run. They must be non-empty and free of quotes. Creating a key twice is a
        no-op.
        """
        tags = {name: str(value) for name, value in tags.items()}
        if not tags or any("'" in value or "`" in name for name, value in tags.items()):
            raise ValueError(f"run {key!r}: identifying tags must be given, without quotes")
        self._enqueue({"op": "create_run", "key": key, "run_name": run_name, "tags": tags,
                       "parent": parent_key, "time": _now_ms()})

    def log_params(self, key: str, params: Mapping[str, Any]) -> None:
        """Log params, stringified and cut to MLflow's length limit (values cannot change)."""
        values = {name: _truncate(str(value), MAX_PARAM_VAL_LENGTH)
                  for name, value in params.items()}
        if values:
            self._enqueue({"op": "log_batch", "key": key, "params": values})

    def log_metrics(self, key: str, metrics: Mapping[str, float], step: int) -> None:
        """Log metrics at ``step``, timestamped now."""
        now = _now_ms()
        rows = [[name, float(value), now] for name, value in metrics.items()]
        if rows:
            self._enqueue({"op": "log_batch", "key": key, "step": int(step), "metrics": rows})

    def set_tags(self, key: str, tags: Mapping[str, Any]) -> None:
        """Set tags, stringified and cut to MLflow's length limit."""
        values = {name: _truncate(str(value), MAX_TAG_VAL_LENGTH) for name, value in tags.items()}
        if values:
            self._enqueue({"op": "log_batch", "key": key, "tags": values})

    def delete_tag(self, key: str, name: str) -> None:
        """Remove the tag ``name`` from the run ``key`` if it has it."""
        self._enqueue({"op": "delete_tag", "key": key, "name": name})

    def set_terminated(self, key: str, status: str = "FINISHED") -> None:
        """End the run with ``status`` (FINISHED, FAILED or KILLED), timestamped now."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"status must be one of {TERMINAL_STATUSES}, not {status!r}")
        self._enqueue({"op": "terminate", "key": key, "status": status, "time": _now_ms()})

    def delete_run(self, key: str) -> None:
        """Move the run ``key`` to MLflow's deleted runs (hidden from ``search_runs`` and the
        runs table; ``mlflow runs restore`` brings it back)."""
        self._enqueue({"op": "delete_run", "key": key})

    def log_artifacts(self, key: str, paths: Iterable[str | os.PathLike[str]],
                      artifact_path: str | None = None) -> None:
        """Upload files (a folder goes in as a folder of that name) when the op is applied.

        The files are read then, so they must stay in place until :meth:`flush` says so.
        """
        files = [str(Path(path).resolve()) for path in paths]
        if files:
            self._enqueue({"op": "artifacts", "key": key, "paths": files,
                           "artifact_path": artifact_path})

    # What the caller may ask (also after close).

    def has_run(self, key: str) -> bool:
        """Whether the run ``key`` exists or its creation is enqueued (in any process)."""
        return self._spool.has_run(key)

    def keys(self) -> set[str]:
        """Every run key created or enqueued so far (in any process)."""
        return self._spool.keys()

    def last_step(self, key: str) -> int | None:
        """The largest metric step enqueued for ``key`` so far (in any process), or None."""
        return self._spool.last_step(key)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a closed writer takes no more operations)."""
        with self._cond:
            return self._stop_at is not None

    @property
    def experiment_id(self) -> str | None:
        """The MLflow experiment's id, once the store has answered (else None)."""
        return self._experiment_id

    def unsent(self) -> int:
        """Operations not applied yet; after :meth:`close`, those left for the next writer."""
        return self._spool.unsent()

    def run_id(self, key: str, timeout: float = 30.0) -> str | None:
        """The MLflow run id of ``key``, waiting up to ``timeout`` s for its creation."""
        with self._cond:
            self._cond.wait_for(lambda: self._spool.run_id(key) is not None, timeout)
        return self._spool.run_id(key)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait up to ``timeout`` s until every enqueued operation is applied; True if so."""
        with self._cond:
            return self._cond.wait_for(lambda: self._spool.unsent() == 0, timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Drain for up to ``timeout`` s, then stop; True if nothing was left unsent.

        What could not be sent stays in the spool (a warning says where) and is replayed by the
        next writer over the same folder, which may open as soon as this returns.
        """
        with self._cond:
            if self._stop_at is not None:
                return self.unsent() == 0
            self._stop_at = time.monotonic() + timeout
            self._cond.notify_all()
        http_timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", 10))
        self._thread.join(timeout + http_timeout + 5)
        if left := self.unsent():
            log.warning("MLflow tracking: %d operation(s) not sent to %s are kept in %s; they are"
                        " replayed when tracking of %s starts again", left, self.tracking_uri,
                        self.spool_path, self.folder.parent)
        if not self._thread.is_alive():
            self._spool.close()  # releases the folder to the next writer
        return left == 0

    # The background thread.

    def _enqueue(self, op: dict[str, Any]) -> None:
        with self._cond:
            if self._stop_at is not None:
                raise WriterClosedError(f"MLflow writer for {self.folder} is closed")
            self._spool.append(op)
            self._cond.notify_all()

    def _work(self) -> None:
        """Apply the oldest unsent operation, retrying it while the store is down, until closed
        and drained (or out of time). A rejected operation is dropped with a warning."""
        batch: deque[tuple[int, dict[str, Any]]] = deque()
        delay = self._retry_initial_s
        while (head := self._next(batch)) is not None:
            seq, op = head
            try:
                created = self._apply(op)
            except Exception as exc:  # noqa: BLE001 -- any failure is either retried or reported
                if _is_transient(exc):
                    self._report_outage(exc)
                    self._back_off(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                log.warning("MLflow tracking: %s for %r was rejected and is dropped: %s",
                            op["op"], op["key"], _short(exc))
                created = None
                if op["op"] == "create_run":
                    self._spool.forget(op["key"])
            self._report_recovery()
            delay = self._retry_initial_s
            batch.popleft()
            self._spool.mark_applied(seq, created)
            with self._cond:
                self._cond.notify_all()
        self._spool.close()  # closed and done: free the folder, also if close() stopped waiting

    def _next(self, batch: deque[tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]] | None:
        """The oldest unsent operation, read ``max_queue`` at a time into ``batch``; None when
        closing and drained or out of time."""
        with self._cond:
            while True:
                if self._stop_at is not None and time.monotonic() >= self._stop_at:
                    return None
                if not batch:
                    batch.extend(self._spool.pending(self._max_queue))
                if batch:
                    return batch[0]
                if self._stop_at is not None:
                    return None
                self._cond.wait()

    def _report_outage(self, exc: BaseException) -> None:
        if not self._in_outage:
            self._in_outage = True
            log.warning("MLflow tracking store %s is not answering (%s); tracking goes on in the"
                        " background: operations wait in %s and are sent, in order, when it"
                        " answers again", self.tracking_uri, _short(exc), self.spool_path)

    def _report_recovery(self) -> None:
        if self._in_outage:
            self._in_outage = False
            log.warning("MLflow tracking store %s answers again; sending %d waiting operation(s)",
                        self.tracking_uri, self.unsent())

    def _back_off(self, delay: float) -> None:
        """Sleep ``delay`` s, cut short by the close deadline (not by new operations)."""
        until = time.monotonic() + delay
        with self._cond:
            while True:
                limit = until if self._stop_at is None else min(until, self._stop_at)
                left = limit - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    # Applying one operation.

    def _apply(self, op: dict[str, Any]) -> tuple[str, str] | None:
        """Send ``op`` to the store; for a creation, return ``(key, run_id)``."""
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        if self._experiment_id is None:
            found = self._client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = found.experiment_id if found is not None else (
                self._client.create_experiment(self.experiment_name, self._artifact_location,
                                               tags=EXPERIMENT_TAGS))
        kind = op["op"]
        if kind == "create_run":
            return op["key"], self._apply_create(op)
        if kind == "log_batch":
            self._apply_batch(op)
        elif kind == "terminate":
            self._client.set_terminated(self._run(op["key"]), op["status"], op["time"])
        elif kind == "artifacts":
            self._apply_artifacts(op)
        elif kind == "delete_tag":
            self._apply_delete_tag(op)
        elif kind == "delete_run":
            self._client.delete_run(self._run(op["key"]))
        else:
            raise _Rejected(f"unknown operation {kind!r}")
        return None

    def _run(self, key: str) -> str:
        run_id = self._spool.run_id(key)
        if run_id is None:
            raise _Rejected(f"no run was created for {key!r}")
        return run_id

    def _apply_create(self, op: dict[str, Any]) -> str:
        """The run of ``op["key"]``: already known, found by its tags, or created now."""
        assert self._client is not None and self._experiment_id is not None
        if (known := self._spool.run_id(op["key"])) is not None:
            return known
        tags = dict(op["tags"])
        if op["parent"] is not None:
            tags[MLFLOW_PARENT_RUN_ID] = self._run(op["parent"])
        found = self._client.search_runs([self._experiment_id], _tag_filter(tags),
                                         max_results=1)
        if found:
            return found[0].info.run_id
        return self._client.create_run(self._experiment_id, start_time=op["time"], tags=tags,
                                       run_name=op["run_name"]).info.run_id

    def _apply_batch(self, op: dict[str, Any]) -> None:
        assert self._client is not None
        run_id = self._run(op["key"])
        metrics = [Metric(name, value, timestamp, op["step"])
                   for name, value, timestamp in op.get("metrics", ())]
        params = [Param(name, value) for name, value in op.get("params", {}).items()]
        tags = [RunTag(name, value) for name, value in op.get("tags", {}).items()]
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
            self._client.log_batch(run_id, metrics=chunk)
        for chunk in _chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(run_id, params=chunk)
        for chunk in _chunks(tags, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(run_id, tags=chunk)

    def _apply_delete_tag(self, op: dict[str, Any]) -> None:
        assert self._client is not None
        run_id = self._run(op["key"])
        if op["name"] in self._client.get_run(run_id).data.tags:
            self._client.delete_tag(run_id, op["name"])

    def _apply_artifacts(self, op: dict[str, Any]) -> None:
        assert self._client is not None
        run_id = self._run(op["key"])
        for name in op["paths"]:
            path = Path(name)
            if path.is_dir():
                inside = f"{op['artifact_path']}/{path.name}" if op["artifact_path"] else path.name
                self._client.log_artifacts(run_id, str(path), inside)
            elif path.is_file():
                self._client.log_artifact(run_id, str(path), op["artifact_path"])
            else:
                raise FileNotFoundError(f"artifact {path} does not exist")


_open_writers: dict[Path, MlflowWriter] = {}
_open_writers_lock = threading.Lock()


def shared_writer(tracking_uri: str, experiment_name: str,
                  state_dir: str | os.PathLike[str], **options: Any) -> MlflowWriter:
    """The open writer of ``state_dir`` in this process, else a new one.

    Ray Tune unpickles its own copy of a callback on ``Tuner.restore``; sharing the writer by
    folder lets the driver's copy and Ray's copy talk to the same spool.
    """
    folder = tracking_dir(state_dir).resolve()
    with _open_writers_lock:
        writer = _open_writers.get(folder)
        if writer is None or writer.closed:
            writer = MlflowWriter(tracking_uri, experiment_name, state_dir, **options)
            _open_writers[folder] = writer
        elif (writer.tracking_uri, writer.experiment_name) != (tracking_uri, experiment_name):
            raise ValueError(f"{state_dir} is already tracked to {writer.tracking_uri} "
                             f"experiment {writer.experiment_name!r}")
        return writer

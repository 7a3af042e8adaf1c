"""A background MLflow writer that never blocks its caller and never loses an operation.

The search driver must not wait on MLflow: one call to a tracking server that is down blocks for
minutes inside the client's own retries. :class:`MlflowWriter` takes each operation (create a run,
log params / metrics / tags, terminate a run, upload artifacts), appends it to a local spool file
and returns; one background thread applies the operations in order through
:class:`mlflow.tracking.MlflowClient`.

Durability and bounded memory come from the spool, an append-only JSON-lines log in
``<state_dir>/tracking/``: every operation is written there first, only the next ``max_queue``
ones are held in memory, and a small state file records how far the log has been applied and
which MLflow run each logical key (``"parent"``, a trial id) maps to. While the store fails the
writer warns once, retries with back-off and lets the log grow; when the store answers again it
replays the log in order. A writer started over the same folder (``autoft resume`` after a crash)
replays what the previous process could not send. Replays are idempotent: a run is looked up by
its creation tags before it is created, metrics keep the timestamp they were logged with (MLflow
ignores an identical metric row), params and tags are re-set to the same values.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

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

log = logging.getLogger(__name__)

# A tracking server that is down must fail a call at once, not after minutes of the client's own
# retries: the writer retries by itself. Ending a run must not print its URL into the driver's
# console from the background. Set before any client exists; a user's own value wins.
CLIENT_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                       "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}

TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
SPOOL_FILE = "spool.jsonl"
STATE_FILE = "state.json"


class WriterClosedError(RuntimeError):
    """An operation was given to a writer after :meth:`MlflowWriter.close`."""


class _Rejected(Exception):
    """An operation that can never succeed (its run was never created)."""


def tracking_dir(state_dir: str | os.PathLike[str]) -> Path:
    """Where a writer over ``state_dir`` keeps its spool and state files."""
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
    """Whether retrying can help: the store is down, busy or timing out (not a rejected call)."""
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return status >= 500 or status in (408, 429)
    return isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)


def _tag_filter(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    return (items[start:start + size] for start in range(0, len(items), size))


class MlflowWriter:
    """Applies MLflow operations in order on a background thread; see the module docstring.

    Runs are named by logical keys chosen by the caller (``"parent"``, a trial id); the MLflow
    run id behind a key is known once its creation has been applied (:meth:`run_id`). Every
    method except :meth:`run_id`, :meth:`flush` and :meth:`close` only appends to the spool and
    returns at once, whether or not the store answers.

    Args:
        tracking_uri: the MLflow tracking URI (``sqlite:///...``, ``http://host:5000``).
        experiment_name: the experiment every run goes into; created when missing.
        state_dir: the folder that owns this tracking (the search's experiment folder); the
            spool and state live in ``state_dir/tracking``. One writer per folder at a time.
        max_queue: operations held in memory; the others wait in the spool file.
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
        self._state_path = self.folder / STATE_FILE
        self._max_queue = max_queue
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._artifact_location = artifact_location or default_artifact_location(tracking_uri)
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._in_outage = False

        self._cond = threading.Condition()
        self._memory: deque[tuple[dict[str, Any], int]] = deque()  # (operation, end offset)
        self._runs: dict[str, str] = {}  # key -> MLflow run id, once created
        self._applied_steps: dict[str, int] = {}  # key -> last metric step applied
        self._known: set[str] = set()  # keys whose creation was enqueued
        self._steps: dict[str, int] = {}  # key -> last metric step enqueued
        self._applied = 0  # spool offset after the last applied operation
        self._cached = 0  # spool offset up to which operations are in memory
        self._end = 0  # spool size
        self._pending = 0  # operations enqueued and not applied yet
        self._stop_at: float | None = None  # close() deadline (monotonic)
        self._closed = False

        self.folder.mkdir(parents=True, exist_ok=True)
        self._spool: BinaryIO = open(self.spool_path, "ab")  # noqa: SIM115 -- lives with self
        try:
            fcntl.flock(self._spool.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._spool.close()
            raise RuntimeError(f"{self.folder} is in use by another MLflow writer") from None
        self._recover()
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
        rows = [[name, float(value), int(step), now] for name, value in metrics.items()]
        if rows:
            self._enqueue({"op": "log_batch", "key": key, "metrics": rows})

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

    def log_artifacts(self, key: str, paths: Iterable[str | os.PathLike[str]],
                      artifact_path: str | None = None) -> None:
        """Upload files (a folder goes in as a folder of that name) when the op is applied.

        The files are read then, so they must stay in place until :meth:`flush` says so.
        """
        files = [str(Path(path).resolve()) for path in paths]
        if files:
            self._enqueue({"op": "artifacts", "key": key, "paths": files,
                           "artifact_path": artifact_path})

    # What the caller may ask.

    def has_run(self, key: str) -> bool:
        """Whether the run ``key`` exists or its creation is enqueued (in any process)."""
        with self._cond:
            return key in self._known

    def keys(self) -> set[str]:
        """Every run key created or enqueued so far (in any process)."""
        with self._cond:
            return set(self._known)

    def last_step(self, key: str) -> int | None:
        """The largest metric step enqueued for ``key`` so far (in any process), or None."""
        with self._cond:
            return self._steps.get(key)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a closed writer takes no more operations)."""
        with self._cond:
            return self._closed

    @property
    def pending(self) -> int:
        """Operations not applied yet (in memory and in the spool)."""
        with self._cond:
            return self._pending

    def run_id(self, key: str, timeout: float = 30.0) -> str | None:
        """The MLflow run id of ``key``, waiting up to ``timeout`` s for its creation."""
        with self._cond:
            self._cond.wait_for(lambda: key in self._runs, timeout)
            return self._runs.get(key)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait up to ``timeout`` s until every enqueued operation is applied; True if so."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Drain for up to ``timeout`` s, then stop; True if nothing was left unsent.

        What could not be sent stays in the spool (a warning says where) and is replayed by the
        next writer over the same folder.
        """
        with self._cond:
            if self._closed:
                return self._pending == 0
            self._closed = True
            self._stop_at = time.monotonic() + timeout
            self._cond.notify_all()
        http_timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", 10))
        self._thread.join(timeout + http_timeout + 5)
        with self._cond:
            left = self._pending
        if left:
            log.warning("MLflow tracking: %d operation(s) not sent to %s are kept in %s; they are"
                        " replayed when tracking of %s starts again", left, self.tracking_uri,
                        self.spool_path, self.folder.parent)
        if not self._thread.is_alive():
            self._spool.close()  # releases the folder lock
        return left == 0

    # The queue.

    def _enqueue(self, op: dict[str, Any]) -> None:
        line = (json.dumps(op, separators=(",", ":")) + "\n").encode()
        with self._cond:
            if self._closed:
                raise WriterClosedError(f"MLflow writer for {self.folder} is closed")
            self._spool.write(line)
            self._spool.flush()
            start, self._end = self._end, self._end + len(line)
            self._pending += 1
            self._note_enqueued(op)
            if self._cached == start and len(self._memory) < self._max_queue:
                self._memory.append((op, self._end))
                self._cached = self._end
            self._cond.notify_all()

    def _note_enqueued(self, op: dict[str, Any]) -> None:
        if op["op"] == "create_run":
            self._known.add(op["key"])
        for _, _, step, _ in op.get("metrics", ()):
            self._steps[op["key"]] = max(step, self._steps.get(op["key"], step))

    def _recover(self) -> None:
        """Load the state file and scan the unapplied tail of the spool (a previous process)."""
        if self._state_path.exists():
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
            self._runs = state["runs"]
            self._applied_steps = state["steps"]
            self._applied = state["applied_offset"]
        self._known = set(self._runs)
        self._steps = dict(self._applied_steps)
        size = self.spool_path.stat().st_size
        if self._applied > size:  # the spool was compacted just before a crash
            self._applied = 0
        offset = self._applied
        with open(self.spool_path, "rb") as spool:
            spool.seek(offset)
            for line in spool:
                try:
                    op = json.loads(line) if line.endswith(b"\n") else None
                except json.JSONDecodeError:
                    op = None
                if op is None:  # a line cut short by a crash: the caller never got past it
                    log.warning("MLflow tracking: dropping a partial line at the end of %s",
                                self.spool_path)
                    self._spool.truncate(offset)
                    break
                offset += len(line)
                self._pending += 1
                self._note_enqueued(op)
        self._cached = self._applied
        self._end = offset
        if self._pending:
            log.info("MLflow tracking: %d operation(s) left in %s by an earlier run will be sent"
                     " to %s", self._pending, self.spool_path, self.tracking_uri)

    def _next_op(self) -> dict[str, Any] | None:
        """The oldest unapplied operation; None when closing and drained or out of time."""
        with self._cond:
            while True:
                if self._stop_at is not None and (
                        self._pending == 0 or time.monotonic() >= self._stop_at):
                    return None
                if self._memory:
                    return self._memory[0][0]
                if self._cached < self._end:
                    self._load_from_spool()
                    continue
                self._cond.wait(None if self._stop_at is None
                                else self._stop_at - time.monotonic())

    def _load_from_spool(self) -> None:
        with open(self.spool_path, "rb") as spool:
            spool.seek(self._cached)
            while self._cached < self._end and len(self._memory) < self._max_queue:
                line = spool.readline()
                self._cached += len(line)
                self._memory.append((json.loads(line), self._cached))

    def _done(self, op: dict[str, Any]) -> None:
        """Mark the head operation applied (or dropped); compact the spool once all are."""
        with self._cond:
            _, self._applied = self._memory.popleft()
            self._pending -= 1
            for _, _, step, _ in op.get("metrics", ()):
                key = op["key"]
                self._applied_steps[key] = max(step, self._applied_steps.get(key, step))
            if self._pending == 0:
                self._spool.truncate(0)
                self._applied = self._cached = self._end = 0
            self._save_state()
            self._cond.notify_all()

    def _save_state(self) -> None:
        state = {"runs": self._runs, "steps": self._applied_steps,
                 "applied_offset": self._applied}
        temporary = self._state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state), encoding="utf-8")
        os.replace(temporary, self._state_path)

    # The background thread.

    def _work(self) -> None:
        delay = self._retry_initial_s
        while (op := self._next_op()) is not None:
            try:
                self._apply(op)
            except Exception as exc:  # noqa: BLE001 -- any failure is either retried or reported
                if _is_transient(exc):
                    self._report_outage(exc)
                    self._back_off(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                log.warning("MLflow tracking: %s for %r was rejected and is dropped: %s",
                            op["op"], op["key"], _short(exc))
            self._report_recovery()
            delay = self._retry_initial_s
            self._done(op)

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
                        self.tracking_uri, self.pending)

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

    def _apply(self, op: dict[str, Any]) -> None:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        if self._experiment_id is None:
            self._experiment_id = self._ensure_experiment()
        kind = op["op"]
        if kind == "create_run":
            self._apply_create(op)
        elif kind == "log_batch":
            self._apply_batch(op)
        elif kind == "terminate":
            self._client.set_terminated(self._run(op["key"]), op["status"], op["time"])
        elif kind == "artifacts":
            self._apply_artifacts(op)
        elif kind == "delete_tag":
            self._apply_delete_tag(op)
        else:
            raise _Rejected(f"unknown operation {kind!r}")

    def _ensure_experiment(self) -> str:
        assert self._client is not None
        found = self._client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        return self._client.create_experiment(self.experiment_name, self._artifact_location)

    def _run(self, key: str) -> str:
        with self._cond:
            if key not in self._runs:
                raise _Rejected(f"no run was created for {key!r}")
            return self._runs[key]

    def _apply_create(self, op: dict[str, Any]) -> None:
        assert self._client is not None and self._experiment_id is not None
        with self._cond:
            if op["key"] in self._runs:
                return
        tags = dict(op["tags"])
        if op["parent"] is not None:
            tags[MLFLOW_PARENT_RUN_ID] = self._run(op["parent"])
        found = self._client.search_runs([self._experiment_id], _tag_filter(tags),
                                         max_results=1)
        if found:
            run_id = found[0].info.run_id
        else:
            run_id = self._client.create_run(self._experiment_id, start_time=op["time"],
                                             tags=tags, run_name=op["run_name"]).info.run_id
        with self._cond:
            self._runs[op["key"]] = run_id
            self._cond.notify_all()

    def _apply_batch(self, op: dict[str, Any]) -> None:
        assert self._client is not None
        run_id = self._run(op["key"])
        metrics = [Metric(name, value, timestamp, step)
                   for name, value, step, timestamp in op.get("metrics", ())]
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

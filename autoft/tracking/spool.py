"""The durable spool of :class:`~autoft.tracking.writer.MlflowWriter`: an SQLite database.

Every operation the writer is given is committed here before the call returns, and marked
applied once MLflow took it, so a process killed at any moment leaves exactly its unsent
operations for the next writer over the same folder. SQLite does what a hand-made log would have
to do by hand: a commit is atomic (a write cut short by a crash is rolled back at the next open),
``synchronous=FULL`` in WAL mode fsyncs every commit, and the database is opened in exclusive
locking mode, so while one writer holds the spool any other (in this process or another one) is
refused, and the operating system drops the lock when the holder dies.

Two tables:

* ``ops``: ``seq`` (autoincrement: the order of application, never reused), the operation as
  JSON, and an ``applied`` flag. Applied rows are deleted once nothing is left unsent.
* ``runs``: one row per logical run key (``"parent"``, a trial id) whose creation was enqueued:
  its MLflow run id once the creation was applied, and the largest metric step enqueued for it.

``runs`` is small and mirrored in memory, so the questions the caller asks on every Tune event
(:meth:`Spool.last_step`, :meth:`Spool.has_run`) are answered without reading the disk, also
after :meth:`Spool.close`. ``ops`` is only read ``limit`` rows at a time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS unsent_ops ON ops (seq) WHERE applied = 0;
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    run_id TEXT,
    last_step INTEGER
);
"""


class SpoolInUseError(RuntimeError):
    """Another writer, in this process or another one, holds the spool."""


class Spool:
    """Operations waiting for MLflow, in order, and the MLflow run id of each logical key.

    Thread-safe: one connection, used under a lock, serves the caller's thread (appends) and the
    writer's background thread (reads and marks). Opening takes the spool for this object until
    :meth:`close` (or the death of the process); a second opening raises
    :class:`SpoolInUseError`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # timeout=0: a spool in use is refused at once; isolation_level=None: transactions are
        # the explicit BEGIN IMMEDIATE ... COMMIT below.
        self._db = sqlite3.connect(self.path, timeout=0, isolation_level=None,
                                   check_same_thread=False)
        try:
            # Exclusive before WAL: the lock is taken at the first access and held until close.
            self._db.execute("PRAGMA locking_mode = EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            rows = self._db.execute("SELECT key, run_id, last_step FROM runs").fetchall()
            (self._unsent,) = self._db.execute(
                "SELECT COUNT(*) FROM ops WHERE applied = 0").fetchone()
        except sqlite3.OperationalError as exc:
            self._db.close()
            if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                raise SpoolInUseError(f"{self.path} is in use by another MLflow writer") from None
            raise
        self._run_ids: dict[str, str | None] = {key: run_id for key, run_id, _ in rows}
        self._steps: dict[str, int] = {key: step for key, _, step in rows if step is not None}
        self._closed = False

    def append(self, op: Mapping[str, Any]) -> None:
        """Commit ``op`` (JSON-serialisable, with a ``key``) as the newest unsent operation.

        In the same transaction, ``op["op"] == "create_run"`` makes ``op["key"]`` a known run,
        and an ``op["step"]`` raises the last step of a known run.
        """
        key, step = op["key"], op.get("step")
        with self._lock:
            created = op["op"] == "create_run" and key not in self._run_ids
            raised = step is not None and (created or key in self._run_ids) and (
                key not in self._steps or step > self._steps[key])
            with self._db:  # commits, or rolls back on an exception
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO ops (payload) VALUES (?)",
                                 (json.dumps(op, separators=(",", ":")),))
                if created:
                    self._db.execute("INSERT INTO runs (key) VALUES (?)", (key,))
                if raised:
                    self._db.execute("UPDATE runs SET last_step = ? WHERE key = ?", (step, key))
            self._unsent += 1
            if created:
                self._run_ids[key] = None
            if raised:
                self._steps[key] = step

    def pending(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The ``limit`` oldest unsent operations, in order, as ``(seq, op)``."""
        with self._lock:
            rows = self._db.execute("SELECT seq, payload FROM ops WHERE applied = 0"
                                    " ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, json.loads(payload)) for seq, payload in rows]

    def mark_applied(self, seq: int, created: tuple[str, str] | None = None) -> None:
        """Mark operation ``seq`` applied (or given up for good), so it is never sent again.

        ``created=(key, run_id)`` records, in the same transaction, the MLflow run that the
        operation created for ``key``. Once nothing is unsent, applied rows are deleted.
        """
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                done = self._db.execute("UPDATE ops SET applied = 1 WHERE seq = ? AND applied = 0",
                                        (seq,)).rowcount
                if created is not None:
                    self._db.execute("UPDATE runs SET run_id = ? WHERE key = ?",
                                     (created[1], created[0]))
                if self._unsent - done == 0:
                    self._db.execute("DELETE FROM ops WHERE applied = 1")
            self._unsent -= done
            if created is not None and created[0] in self._run_ids:
                self._run_ids[created[0]] = created[1]

    def forget(self, key: str) -> None:
        """Unknow ``key`` if its run was never created (its creation was rejected), so that a
        later creation of ``key`` is tried again."""
        with self._lock:
            if key not in self._run_ids or self._run_ids[key] is not None:
                return
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM runs WHERE key = ?", (key,))
            del self._run_ids[key]
            self._steps.pop(key, None)

    def run_id(self, key: str) -> str | None:
        """The MLflow run id of ``key``, once its creation was applied."""
        with self._lock:
            return self._run_ids.get(key)

    def has_run(self, key: str) -> bool:
        """Whether the creation of ``key`` was enqueued (by this or an earlier process)."""
        with self._lock:
            return key in self._run_ids

    def keys(self) -> set[str]:
        """Every run key whose creation was enqueued."""
        with self._lock:
            return set(self._run_ids)

    def last_step(self, key: str) -> int | None:
        """The largest metric step enqueued for the run ``key``, or None."""
        with self._lock:
            return self._steps.get(key)

    def unsent(self) -> int:
        """How many operations are not applied yet."""
        with self._lock:
            return self._unsent

    def close(self) -> None:
        """Release the spool (and its lock); the read-only questions above still answer."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

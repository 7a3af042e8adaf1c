"""The SQLite spool under the MLflow writer: order, applied flag, run map, crashes, one holder."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from autoft.tracking.spool import Spool, SpoolInUseError


def metrics(key: str, step: int) -> dict[str, object]:
    return {"op": "log_batch", "key": key, "step": step, "metrics": [["loss", 1.0, 7]]}


def create(key: str) -> dict[str, object]:
    return {"op": "create_run", "key": key, "tags": {"autoft.trial_id": key}}


def test_operations_come_back_in_order_until_applied(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    for step in range(5):
        spool.append(metrics("t1", step))
    first_two = spool.pending(2)
    assert [op["step"] for _, op in first_two] == [0, 1]
    seqs = [seq for seq, _ in spool.pending(10)]
    assert seqs == sorted(seqs) and len(seqs) == 5 and spool.unsent() == 5

    spool.mark_applied(seqs[0])
    spool.mark_applied(seqs[0])  # twice is harmless
    assert [op["step"] for _, op in spool.pending(10)] == [1, 2, 3, 4]
    assert spool.unsent() == 4
    for seq in seqs[1:]:
        spool.mark_applied(seq)
    assert spool.pending(10) == [] and spool.unsent() == 0
    spool.append(metrics("t1", 5))
    assert spool.pending(10)[0][0] > seqs[-1]  # a seq is never reused
    spool.close()

    reopened = Spool(tmp_path / "spool.sqlite3")
    assert [op["step"] for _, op in reopened.pending(10)] == [5]
    reopened.close()


def test_applied_rows_are_kept_until_nothing_is_unsent(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    for step in range(3):
        spool.append(metrics("t1", step))
    seqs = [seq for seq, _ in spool.pending(10)]
    spool.mark_applied(seqs[0])
    spool.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT seq, applied FROM ops ORDER BY seq").fetchall() == [
            (seqs[0], 1), (seqs[1], 0), (seqs[2], 0)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    spool = Spool(path)
    for seq in seqs[1:]:
        spool.mark_applied(seq)
    spool.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT COUNT(*) FROM ops").fetchone() == (0,)


def test_the_run_map_and_last_steps_survive_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    assert spool._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: fsync per commit
    spool.append(create("parent"))
    spool.append(create("t1"))
    spool.append(create("t1"))  # a second creation of a key changes nothing
    spool.append(create("t2"))
    for step in (0, 3, 1):
        spool.append(metrics("t1", step))
    spool.append(metrics("ghost", 4))  # no creation: not a known run
    (parent_seq, _), (t1_seq, _), *_ = spool.pending(10)
    spool.mark_applied(parent_seq, ("parent", "run-p"))
    spool.mark_applied(t1_seq, ("t1", "run-1"))
    spool.forget("t2")  # its creation was rejected
    spool.forget("t1")  # created: kept
    assert spool.keys() == {"parent", "t1"} and spool.run_id("t1") == "run-1"
    spool.close()
    assert spool.last_step("t1") == 3 and spool.unsent() == 6  # still answers once closed

    reopened = Spool(tmp_path / "spool.sqlite3")
    assert reopened.keys() == {"parent", "t1"} and not reopened.has_run("t2")
    assert (reopened.run_id("parent"), reopened.run_id("t1")) == ("run-p", "run-1")
    assert reopened.last_step("t1") == 3 and reopened.last_step("ghost") is None
    assert reopened.unsent() == 6
    reopened.append(create("t2"))
    assert reopened.has_run("t2") and reopened.run_id("t2") is None
    reopened.close()


DYING_WRITER = textwrap.dedent("""
    import json, os, signal, sys
    from autoft.tracking.spool import Spool
    spool = Spool(sys.argv[1])
    spool.append({"op": "create_run", "key": "t1", "tags": {"autoft.trial_id": "t1"}})
    for step in range(3):
        spool.append({"op": "log_batch", "key": "t1", "step": step, "metrics": []})
    seq, _ = spool.pending(1)[0]
    spool.mark_applied(seq, ("t1", "run-1"))
    spool._db.execute("BEGIN IMMEDIATE")  # a write the death interrupts before its commit
    spool._db.execute("INSERT INTO ops (payload) VALUES (?)",
                      (json.dumps({"op": "log_batch", "key": "t1", "step": 9}),))
    spool._db.execute("UPDATE runs SET last_step = 9")
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_process_leaves_exactly_its_committed_unsent_operations(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    died = subprocess.run([sys.executable, "-c", DYING_WRITER, str(path)], timeout=60)
    assert died.returncode == -signal.SIGKILL
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 0  # the commits are in the write-ahead log, not checkpointed
    with wal.open("ab") as torn:  # a frame cut short: SQLite's checksums discard it
        torn.write(b"\x00\x01half a frame")

    spool = Spool(path)
    assert [op["step"] for _, op in spool.pending(10)] == [0, 1, 2]  # the creation was applied
    assert spool.unsent() == 3 and spool.run_id("t1") == "run-1" and spool.last_step("t1") == 2
    spool.close()


HOLDER = textwrap.dedent("""
    import sys, time
    from autoft.tracking.spool import Spool
    spool = Spool(sys.argv[1])
    print("holding", flush=True)
    time.sleep(120)
""")


def test_one_holder_at_a_time_until_it_closes_or_dies(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    with pytest.raises(SpoolInUseError, match="in use"):
        Spool(path)  # another writer in this process
    spool.close()

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        with pytest.raises(SpoolInUseError):
            Spool(path)  # another process
    finally:
        holder.kill()
        holder.wait(30)
    Spool(path).close()  # the lock died with its holder

"""A real multi-node Ray cluster on this one machine, for the cluster tests and the benchmark.

Every node is a ``ray start --block`` child process in a session of its own, with its own
``--temp-dir`` (so each node keeps its own logs and sockets) and the cluster's own token:
``RAY_AUTH_MODE=token`` with ``RAY_AUTH_TOKEN`` in the environment of the nodes and of every
driver that joins them (:attr:`LocalRayCluster.env`), so nothing is written to the user's
``~/.ray/auth_token``. Nodes are stopped by pid: the node's process group and every process
below it (Ray's workers sit in process groups of their own), never with ``ray stop``.

Ray binds its ports on every interface and reports the machine's address as the node address
even with ``--node-ip-address=127.0.0.1`` (``services.resolve_ip_for_localhost``): the token is
what keeps other machines out.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from autoft.tuning.embedded_ray import EMBEDDED_RAY_ENV

RAY = Path(sys.executable).parent / "ray"
READY_LINE = "Ray runtime started."
OBJECT_STORE_BYTES = 200 * 1024 * 1024


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_table() -> dict[int, tuple[int, int]]:
    """``pid -> (parent pid, process group)`` of every process, read from ``/proc``."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process has just exited
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def process_tree(group: int) -> set[int]:
    """The processes of process group ``group`` and all their descendants."""
    table = process_table()
    found = {pid for pid, (_, pgid) in table.items() if pgid == group}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


@dataclass
class RayNode:
    """One ``ray start --block`` process (a session leader) and the Ray node it runs."""

    name: str
    temp_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def logs_dir(self) -> Path:
        """Where this node's raylet writes the logs of the worker processes it starts."""
        return self.temp_dir / "session_latest" / "logs"

    def ran(self, pid: int) -> bool:
        """Whether worker process ``pid`` (a trial's ``pid`` result field) ran on this node.

        Each node's raylet names every worker's log after the worker's pid, in the node's own
        temp dir: ``worker-<worker id>-<job id>-<pid>.out``.
        """
        return any(self.logs_dir.glob(f"worker-*-{pid}.out"))

    def alive(self) -> bool:
        """Whether the ``ray start`` process still runs."""
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the node's every process at once, as if the machine lost power."""
        for pid in process_tree(self.process.pid):
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                os.kill(pid, signal.SIGKILL)
        self.process.wait(30)


class LocalRayCluster:
    """A Ray head and worker nodes of ``num_cpus`` CPUs each, all on 127.0.0.1.

    Use as a context manager, or call :meth:`shutdown`; ``env`` is the environment a driver
    needs to join (token authentication on, the cluster's token).
    """

    def __init__(self, num_cpus: int = 1, env: dict[str, str] | None = None) -> None:
        self.num_cpus = num_cpus
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short: Ray's unix sockets live under the temp dir and must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="autoft-ray-", dir="/tmp"))
        base = {k: v for k, v in (env or os.environ).items()
                if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        # The nodes start as the autoft image starts them (docker/Dockerfile sets the arena).
        self.env = {"MALLOC_ARENA_MAX": EMBEDDED_RAY_ENV["MALLOC_ARENA_MAX"], **base,
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.nodes: list[RayNode] = []

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start_head()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def start_head(self, timeout: float = 120.0) -> RayNode:
        """Start the head node (GCS and a raylet with ``num_cpus`` CPUs for trials)."""
        return self._start("head", ["--head", f"--port={self.port}", "--include-dashboard=false",
                                    f"--dashboard-port={free_port()}"], timeout)

    def add_node(self, timeout: float = 120.0) -> RayNode:
        """Start one more worker node that joins the head."""
        return self._start(f"node{len(self.nodes)}", [f"--address={self.address}"], timeout)

    def _start(self, name: str, args: list[str], timeout: float) -> RayNode:
        temp_dir = self.root / name
        log = self.root / f"{name}.log"
        command = [str(RAY), "start", "--block", *args, "--node-ip-address=127.0.0.1",
                   f"--num-cpus={self.num_cpus}", "--num-gpus=0",
                   f"--object-store-memory={OBJECT_STORE_BYTES}", f"--temp-dir={temp_dir}",
                   f"--dashboard-agent-listen-port={free_port()}",
                   f"--metrics-export-port={free_port()}", "--disable-usage-stats"]
        with open(log, "wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                       env=self.env, start_new_session=True)
        node = RayNode(name, temp_dir, process, log)
        self.nodes.append(node)
        deadline = time.monotonic() + timeout
        while READY_LINE not in log.read_text(errors="replace"):
            if not node.alive() or time.monotonic() > deadline:
                node.kill()
                raise RuntimeError(f"ray node {name} did not start:\n"
                                   f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return node

    @property
    def head(self) -> RayNode:
        """The head node."""
        return self.nodes[0]

    def node_of(self, pid: int) -> RayNode | None:
        """The node whose raylet started worker process ``pid``, if any."""
        return next((node for node in self.nodes if node.ran(pid)), None)

    def shutdown(self) -> None:
        """Kill every node, then remove the temp dirs."""
        for node in reversed(self.nodes):
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)

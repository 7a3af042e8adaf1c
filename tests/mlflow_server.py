"""A real ``mlflow server`` for tests: on 127.0.0.1, a child process group of the test, stopped,
killed and started again (same port, same store) by its process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MLFLOW = Path(sys.executable).parent / "mlflow"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes] | None, sig: int, group: bool,
                 timeout: float = 30.0) -> None:
    """Send ``sig`` to a child of this test (its process group with ``group``), then wait;
    SIGKILL if it outlives ``timeout``."""
    if process is None or process.poll() is not None:
        return
    send = (lambda s: os.killpg(process.pid, s)) if group else process.send_signal
    try:
        send(sig)
        process.wait(timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout)


class MlflowServer:
    """``mlflow server`` over ``backend_uri`` (default: SQLite in ``folder``), its artifacts and
    its log (``server.log``) in ``folder``."""

    def __init__(self, folder: Path, backend_uri: str | None = None) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.backend_uri = backend_uri or f"sqlite:///{folder / 'db.sqlite'}"
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        command = [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--backend-store-uri", self.backend_uri,
                   "--artifacts-destination", str(self.folder / "artifacts")]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-5000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"mlflow server did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL the whole server (uvicorn and its worker), as a crash would."""
        stop_process(self.process, signal.SIGKILL, group=True)

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, group=True)

"""``autoft ui``: MLflow's UI over a tracking store, opened on the searches' trials.

MLflow 3's UI opens an experiment on its GenAI overview; the links printed here go to each
experiment's "Training runs" view instead, where the trials are nested under their search. The
server runs in its own process group and is stopped with it on SIGTERM or SIGINT, so stopping
``autoft ui`` never leaves a server listening.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from types import FrameType

from mlflow.tracking import MlflowClient

from autoft.tracking.store import runs_url


def experiment_links(uri: str, address: str) -> list[str]:
    """``name: URL`` of every experiment with runs in the store, newest first."""
    client = MlflowClient(uri)
    links = []
    for experiment in client.search_experiments(order_by=["creation_time DESC"]):
        if client.search_runs([experiment.experiment_id], max_results=1):
            url = runs_url(address, experiment.experiment_id)
            links.append(f"{experiment.name}: {url}")
    return links


def serve(uri: str, host: str, port: int) -> int:
    """Serve the UI of ``uri`` on ``host:port`` until the server ends or this process is
    stopped (SIGTERM, SIGINT), then stop the server too; the server's exit status."""
    address = f"http://{host}:{port}"
    print(f"MLflow UI for {uri} on {address}")
    for link in experiment_links(uri, address):
        print(f"  {link}")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", host, "--port", str(port)], start_new_session=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        _signal_group(server.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _signal_group(server.pid, signal.SIGKILL)  # the server's own workers, if any are left
        server.wait()


def _signal_group(pid: int, signum: int) -> None:
    """Signal the server's process group (the server and the workers it started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)

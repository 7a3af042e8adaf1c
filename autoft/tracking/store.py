"""The tracking store, checked before a search writes anything, and the URLs of its UI.

A wrong scheme (``htp://``), a server that does not answer, one that refuses this client
(401/403) or an address that is not an MLflow server is one line of bad input, before Ray
starts: the search would otherwise run with its tracking going nowhere.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from autoft.core.errors import InputError
from autoft.tracking.writer import CLIENT_ENV_DEFAULTS

#: Schemes of the stores MLflow 3 tracks to (a ``postgresql+psycopg2`` driver suffix allowed).
SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
#: Where ``autoft ui`` serves a local store by default.
LOCAL_UI = "http://127.0.0.1:5000"


def check_store(uri: str, where: str = "tracking.uri") -> None:
    """Refuse a tracking URI MLflow cannot write to; a server must answer its REST API."""
    scheme = urlparse(uri).scheme.split("+", 1)[0]
    if scheme not in SCHEMES:
        raise InputError(f"{where}: {uri}: not a tracking store MLflow writes to (scheme "
                         f"{scheme or 'none'!r}; use sqlite:///PATH, postgresql://..., "
                         "or http(s)://HOST:PORT of an MLflow server)")
    if scheme not in ("http", "https"):
        return
    for name, value in CLIENT_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as exc:
        status = exc.get_http_status_code()
        if status in (401, 403):
            raise InputError(f"{where}: {uri} refuses this client (HTTP {status}): set "
                             "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                             "MLFLOW_TRACKING_PASSWORD") from None
        if exc.error_code == "ENDPOINT_NOT_FOUND" or status == 404:
            raise InputError(f"{where}: {uri} is not an MLflow tracking server "
                             "(its REST API answers 404)") from None
        raise InputError(f"{where}: cannot reach the MLflow server at {uri} "
                         f"({_first_line(exc)})") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot reach the MLflow server at {uri} "
                         f"({_first_line(exc)})") from None


def ui_address(uri: str) -> str:
    """Where the UI of the store is: the server itself, else what ``autoft ui`` serves."""
    return uri.rstrip("/") if urlparse(uri).scheme in ("http", "https") else LOCAL_UI


def runs_url(uri: str, experiment_id: str) -> str:
    """The experiment's "Training runs" view (MLflow 3 opens a new experiment on its GenAI
    overview otherwise, even with the experiment kind tag).

    >>> runs_url("sqlite:///tmp/mlflow.db", "3")
    'http://127.0.0.1:5000/#/experiments/3/runs'
    """
    return f"{ui_address(uri)}/#/experiments/{experiment_id}/runs"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]

"""MLflow tracking of a search, written from the driver (design.md, "Tracking layout").

:class:`MlflowTrackingCallback` is the Ray Tune callback the driver installs;
:class:`MlflowWriter` is the resilient background writer under it (bounded memory, a local
spool replayed in order, never blocks the Tune loop).
"""

from autoft.tracking.callback import MlflowTrackingCallback
from autoft.tracking.writer import MlflowWriter, WriterClosedError, shared_writer

__all__ = ["MlflowTrackingCallback", "MlflowWriter", "WriterClosedError", "shared_writer"]

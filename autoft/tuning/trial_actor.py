"""The Ray Tune trainable class a search's trials run in: the trial function as Ray wraps it,
restoring from a checkpoint that still exists and letting its training thread end before the
actor does.

Ray runs a function trainable in a thread of the trial's actor. When Tune stops a trial (the
last epoch reported, a scheduler's prune, the end of the search), the thread leaves through a
``SystemExit`` raised in its ``report`` while Ray's ``cleanup`` returns without waiting for it,
and the actor process may exit while the thread still frees the trial's frames. Freeing a torch
tensor drops and retakes the interpreter lock; at interpreter exit retaking it ends the thread
with ``pthread_exit``, which unwinds through torch's C++ and aborts the process: "Fatal Python
error: Aborted" and a page of extension modules in the worker's log, forwarded to the search's
console (seen in 5 of ~300 Ray sessions of the test suite, the trial already done each time).
So the class waits, briefly, for the thread to end.
"""

from __future__ import annotations

from typing import Any

from ray.train._internal.session import get_session

from autoft.tuning.restore import present_checkpoint

#: How long a stopped trial waits for its training thread to finish unwinding, in seconds: a
#: thread stopped at a report ends in milliseconds; one busy elsewhere is not waited for longer.
THREAD_END_TIMEOUT_S = 10.0


def trial_class(trainable: type) -> type:
    """``trainable`` (a function through Ray's ``wrap_function``) restoring with
    :func:`~autoft.tuning.restore.present_checkpoint` and ending its training thread in
    ``cleanup``."""

    class Trainable(trainable):  # type: ignore[misc,valid-type]
        def restore(self, checkpoint_path: Any) -> None:
            present = present_checkpoint(checkpoint_path)
            if present is not None:
                super().restore(present)

        def cleanup(self) -> None:
            session = get_session()
            thread = getattr(session, "training_thread", None)
            try:
                super().cleanup()
            finally:
                if thread is not None:
                    thread.join(THREAD_END_TIMEOUT_S)

    Trainable.__name__ = Trainable.__qualname__ = trainable.__name__
    return Trainable

"""SIGINT (Ctrl-C) and SIGTERM (pre-emption) stop a run cleanly: the step in progress finishes,
a checkpoint is saved, and the process exits with status 0.

The handler only records the signal in a :class:`StopRequest`; the loop's bookkeeping
(``training.bookkeeping``) acts on it after the step, so the checkpoint is consistent.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """The stop signal that arrived in this process, if any (set by the handler only)."""

    signum: int | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived in this process."""
        return self.signum is not None

    def describe(self) -> str:
        """The signal's name, e.g. ``SIGTERM``, for messages."""
        if self.signum is None:
            return "a stop signal on another rank"
        return signal.Signals(self.signum).name


class RunInterrupted(SystemExit):
    """A SIGINT or SIGTERM stopped the run after saving: exit status 0, no traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(0)
        self.message = message


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """While training, SIGINT and SIGTERM set the yielded :class:`StopRequest`.

    A second Ctrl-C stops at once (``KeyboardInterrupt``). Outside the main thread (signals
    cannot be caught there) nothing is installed. The previous handlers are restored on exit.
    """
    stop = StopRequest()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.signum = signum
        log.warning("%s received: saving a checkpoint after this step", stop.describe())

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGINT/SIGTERM to the main process.

    A Ctrl-C or a cluster's SIGTERM reaches the whole process group; a worker killed by it
    would crash the main process before it could save its checkpoint.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)

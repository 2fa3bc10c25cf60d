"""SIGINT (Ctrl-C) and SIGTERM (pre-emption) stop a run cleanly, in every phase, with status 0.

While training (:meth:`StopRequest.training`) the handler only records the signal; the loop's
bookkeeping (``training.bookkeeping``) finishes the step, saves a checkpoint and exits, so the
checkpoint is consistent. In the other phases (start-up, the final test, writing the tables)
nothing is half-way through a step: the run stops at once, keeping every checkpoint already
on disk, and the printed resume command redoes only what is missing (a resumed run whose
epochs are all done only runs the final test).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """The stop signal that arrived in this process, if any (set by the handler only).

    Attributes:
        signum: the signal, once one arrived.
        in_training: steps are running: a signal waits for the end of the step.
        run_dir: the run directory, for the resume command outside training.
    """

    signum: int | None = None
    in_training: bool = False
    run_dir: Path | None = None

    @contextmanager
    def training(self) -> Iterator[None]:
        """Within this block a signal is acted on after the step (``training.bookkeeping``)."""
        self.in_training = True
        try:
            yield
        finally:
            self.in_training = False

    def stop_now(self) -> RunInterrupted:
        """The exit for a signal outside training (start-up, final test, tables)."""
        where = f"hydra.run.dir={self.run_dir}" if self.run_dir else "hydra.run.dir=<run dir>"
        message = (
            f"{self.describe()} outside training (start-up, final test or tables): stopped; "
            f"the checkpoints on disk are kept. Continue with the same command plus "
            f"`resume=true {where}`"
        )
        log.warning(message)
        return RunInterrupted(message)

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
def stop_on_signals(run_dir: Path | None = None) -> Iterator[StopRequest]:
    """For a whole run: SIGINT and SIGTERM set the yielded :class:`StopRequest` while training
    (then the step finishes and is saved) and raise :class:`RunInterrupted` at once otherwise.

    A second Ctrl-C stops at once (``KeyboardInterrupt``). Outside the main thread (signals
    cannot be caught there) nothing is installed. The previous handlers are restored on exit.
    """
    stop = StopRequest(run_dir=run_dir)

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.signum = signum
        if not stop.in_training:
            raise stop.stop_now()
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

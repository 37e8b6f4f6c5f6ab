"""Preemption: SIGTERM / SIGINT ask a training loop to stop after its current step and save."""

from __future__ import annotations

import os
import signal
from typing import Any


class StopFlag:
    """Set by SIGTERM/SIGINT; the training loop checks it after every step."""

    def __init__(self):
        self.signum: int | None = None
        self.repeats = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            self.repeats += 1
            if self.repeats >= 2:
                raise KeyboardInterrupt  # third Ctrl-C: give up on the graceful path
            # os.write, not logging or print: a signal handler may interrupt either mid-write
            os.write(2, b"Ctrl-C again: still saving. The run finishes its current step, writes "
                        b"checkpoints/latest.pth and exits; a third Ctrl-C abandons that save "
                        b"(the previous latest.pth stays intact)\n")
            return
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

"""Preemption: SIGTERM / SIGINT ask a training loop to stop after its current step and save.

Outside a training loop SIGTERM ends a job as Ctrl-C does (:func:`on_sigterm`), except once the
job is already ending with an error: a launcher (torchrun) SIGTERMs the other processes the
moment one dies, and that signal must not cut off the line that names the error.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM during a job: ends it as Ctrl-C does (one line, the folder consistent)."""


_ending = False


def job_starting() -> None:
    """A job (or an entry point) begins: SIGTERM ends it again."""
    global _ending
    _ending = False


def job_ending() -> None:
    """The job's outcome is decided (an error is on its way to its one line): ignore SIGTERM."""
    global _ending
    _ending = True


def on_sigterm(_signum, _frame) -> None:
    """The SIGTERM handler of entry points and jobs: raise :class:`Terminated` unless the job
    is already ending."""
    if not _ending:
        raise Terminated()


# how long after a swallowed interrupt (see JobSignals) it is sent again
RESEND_DELAY_S = 0.05


def _send_after(signum: int, hook_done: threading.Event) -> None:
    """Send ``signum`` to this process RESEND_DELAY_S after ``hook_done`` is set."""
    hook_done.wait()
    time.sleep(RESEND_DELAY_S)
    os.kill(os.getpid(), signum)


class JobSignals:
    """SIGTERM handled by :func:`on_sigterm`, and interrupts that Python swallowed sent again,
    from construction until :meth:`restore`.

    A signal handler runs wherever the main thread is, also inside a weakref callback, a
    ``__del__`` method or the garbage collector (importlib's module-lock callbacks during an
    import, for instance). An exception raised there is reported to ``sys.unraisablehook``
    ("Exception ignored in ...") and the code goes on, so a SIGTERM or Ctrl-C that arrived then was
    lost and the job ran on: seen in the fault suite for about 1 SIGTERM in 150 sent while a job
    imported tensorboard. The hook installed here sends such a signal again a moment later, when
    its handler runs in ordinary code (and again if it is swallowed again)."""

    def __init__(self):
        job_starting()
        self._handler = signal.signal(signal.SIGTERM, on_sigterm)
        self._hook = sys.unraisablehook
        sys.unraisablehook = self._resend_swallowed

    def _resend_swallowed(self, unraisable) -> None:
        exc = unraisable.exc_value
        if not isinstance(exc, KeyboardInterrupt):
            self._hook(unraisable)
            return
        # A handler raising inside this hook is swallowed too, and not reported to any hook: the
        # signal, and the resend with it, would be lost (seen when starting the resend's thread
        # took longer than RESEND_DELAY_S on a loaded machine). So while the hook runs, the
        # handlers only note a signal, and the resends wait until the hook has returned.
        lost = [signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT]
        hook_done = threading.Event()
        held = {}
        if threading.current_thread() is threading.main_thread():
            held = {s: signal.signal(s, lambda signum, _frame: lost.append(signum))
                    for s in (signal.SIGTERM, signal.SIGINT)}
        resent: set[int] = set()
        try:
            while lost:
                signum = lost.pop()
                if signum not in resent:     # a second of the same kind adds nothing
                    resent.add(signum)
                    threading.Thread(target=_send_after, args=(signum, hook_done),
                                     daemon=True).start()
        finally:
            for signum, handler in held.items():
                signal.signal(signum, handler)
            hook_done.set()

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._handler)
        sys.unraisablehook = self._hook


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
        """Put the previous handlers back; while an error unwinds the loop, the job is ending
        (a SIGTERM from then on must not replace that error with an interruption)."""
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, KeyboardInterrupt):
            job_ending()
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

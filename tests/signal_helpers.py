"""Signals delivered where Python swallows what their handler raises (stdlib only: the tests that
need a fresh interpreter import it there too).

Python runs a signal's handler in the main thread wherever that thread is, also inside a weakref
callback; an exception the handler raises there is reported to ``sys.unraisablehook``
("Exception ignored in ...") and the code goes on.
"""

from __future__ import annotations

import os
import signal
import time
import weakref


def spin() -> None:
    """Run bytecode for a moment: a pending signal's handler runs here."""
    for _ in range(100_000):
        pass


class _Thing:
    pass


def signal_inside_a_weakref_callback(signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to this process from inside a weakref callback, so that its handler runs
    (and raises, if it raises) there."""
    def callback(_ref):
        os.kill(os.getpid(), signum)
        spin()

    thing = _Thing()
    ref = weakref.ref(thing, callback)
    del thing                   # runs the callback
    assert ref() is None


def swallowed_sigterm_stops(seconds: float = 5.0) -> bool:
    """SIGTERM from inside a weakref callback, then up to ``seconds`` of ordinary code: whether
    engine.preemption.Terminated reached it (printing "swallowed" once the callback is past, and
    "stopped" or "ran on")."""
    from engine.preemption import Terminated
    try:
        signal_inside_a_weakref_callback()
        print("swallowed", flush=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
    except Terminated:
        print("stopped", flush=True)
        return True
    print("ran on", flush=True)
    return False

"""Entry-point wrapper: user-fixable errors (any user_errors.UserError) end as one clear line and
exit status 2, no traceback; a lost peer process of a multi-process job, or the communication
backend (NCCL) failing for a reason of its own, ends as one clear line naming the cause and exit
status 1."""

from __future__ import annotations

import re
import sys
from typing import Callable

from engine.errors import JobInterrupted
from user_errors import UserError


def _message(exc: BaseException) -> str:
    """The error's message; for one re-raised from a DataLoader worker, the worker's own message
    without the worker's traceback that the DataLoader puts in front of it."""
    text = str(exc)
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return text
    own = re.search(rf"^(?:[\w.]+\.)?{re.escape(type(exc).__qualname__)}: ", text, re.MULTILINE)
    return text[own.end():].rstrip() if own else text


def job_main(job: str, runner: str, argv: list[str] | None = None) -> int:
    """The body of every entry point: parse the job's config, honour --print-config, then call
    ``runner`` ("module:function", imported only now so --help and config errors stay fast)."""
    import importlib

    from config import describe, parse_config, value_sources
    from engine.distributed import env_world_size
    cfg, args = parse_config(job, argv, world_size=env_world_size())
    if args.print_config:
        print(describe(cfg, value_sources(job, args)))
        return 0
    module, function = runner.split(":")
    getattr(importlib.import_module(module), function)(cfg)
    return 0


def final_line(exc: BaseException) -> str | None:
    """The one line run_main prints for ``exc`` (None: not a user error, a traceback follows)."""
    if isinstance(exc, UserError):
        return f"error: {_message(exc)}"
    if isinstance(exc, JobInterrupted):
        return f"interrupted: {exc}"
    from engine.distributed import (backend_failure_message, is_backend_failure,
                                    is_peer_failure, peer_failure_message)
    if isinstance(exc, Exception) and is_peer_failure(exc):
        return f"error: {peer_failure_message(exc)}"
    if isinstance(exc, Exception) and is_backend_failure(exc):
        return f"error: {backend_failure_message(exc)}"
    return None


def _report(line: str) -> None:
    print(line, file=sys.stderr)


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Call ``main(argv)``; turn the project's user errors into ``error: ...`` and exit code 2,
    Ctrl-C into one ``interrupted: ...`` line and exit code 130 (SIGTERM during a job: 143) (no traceback in either case).
    engine.common.run_job has already written the same line into the run's log.txt.

    SIGTERM is handled from the start (engine.preemption.JobSignals, which also sends again a
    signal whose exception Python swallowed); once an error is on its way to its line, a SIGTERM
    (torchrun's, sent the moment another process died) is ignored until the line is printed."""
    from engine.preemption import JobSignals, Terminated, job_ending
    signals = JobSignals()
    try:
        code = main(argv)
    except UserError as exc:
        job_ending()
        _report(final_line(exc))
        sys.exit(2)
    except JobInterrupted as exc:
        job_ending()
        _report(final_line(exc))
        sys.exit(exc.status)
    except KeyboardInterrupt as exc:
        job_ending()
        by, status = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("Ctrl-C", 130)
        _report(f"interrupted: stopped by {by} before the job started; nothing was written")
        sys.exit(status)
    except Exception as exc:
        job_ending()
        from engine.distributed import is_backend_failure, is_peer_failure
        if not (is_peer_failure(exc) or is_backend_failure(exc)):
            raise
        # a traceback into DDP internals would hide the one fact that matters: a peer is gone,
        # or the communication backend names a configuration error
        _report(final_line(exc))
        sys.exit(1)
    finally:
        signals.restore()
    sys.exit(code or 0)

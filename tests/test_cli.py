"""engine.cli: every user-facing error is a user_errors.UserError, reported as one line."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.cli import final_line
from user_errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _user_errors() -> list[tuple[type, type]]:
    """(error class, the built-in base it kept so existing except clauses still match)."""
    from config import ConfigError
    from dataloaders.splits import DatasetError
    from dataloaders.synthetic import SyntheticDatasetError
    from dataloaders.video import VideoDecodeError, VideoTooShortError
    from engine.checkpoint import CheckpointWriteError
    from engine.errors import NonFiniteLossError, RunFolderError, TrainingError
    from models.weights import CheckpointError
    return [(ConfigError, ValueError), (DatasetError, Exception),
            (SyntheticDatasetError, Exception), (VideoDecodeError, Exception),
            (VideoTooShortError, Exception), (CheckpointError, Exception),
            (CheckpointWriteError, RuntimeError), (TrainingError, RuntimeError),
            (NonFiniteLossError, RuntimeError), (RunFolderError, RuntimeError)]


@pytest.mark.parametrize("index", range(10))
def test_user_errors_share_one_base_and_keep_theirs(index):
    cls, base = _user_errors()[index]
    assert issubclass(cls, UserError) and issubclass(cls, base)
    exc = cls("v.avi", "cannot open") if cls.__name__.startswith("Video") else cls("what to do")
    assert final_line(exc) == f"error: {exc}"


def test_other_errors_are_not_user_errors():
    from engine.errors import JobInterrupted
    assert not issubclass(JobInterrupted, UserError)
    assert final_line(JobInterrupted("kept x")) == "interrupted: kept x"
    assert final_line(ValueError("a bug")) is None and final_line(RuntimeError("a bug")) is None


# --- SIGTERM while a job ends (torchrun SIGTERMs every process the moment one dies) -----------

def _run_snippet(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter at the repository root: a handler that regressed kills
    that process with the signal, not the test session."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)


def test_sigterm_while_a_failed_job_cleans_up_keeps_the_error_line():
    """A job whose start-up failed gets SIGTERM while it leaves the process group: the process
    still prints its one error line and exits 2 (it used to die from the signal, silently)."""
    result = _run_snippet("""
        import os, signal
        import engine.common as common, engine.distributed as distributed
        from config import ConfigError
        from engine.cli import run_main

        def failing_setup(*args, **kwargs):
            raise ConfigError("--data-root /nowhere does not exist")

        def cleanup_then_sigterm():
            os.kill(os.getpid(), signal.SIGTERM)

        common.setup_run = failing_setup
        distributed.cleanup = cleanup_then_sigterm
        run_main(lambda argv: common.run_job(None, "test job", lambda cfg, ctx: None))
    """)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.strip() == "error: --data-root /nowhere does not exist"


def test_sigterm_after_a_training_loop_failed_does_not_replace_its_error():
    """StopFlag.restore during an error marks the job as ending: a SIGTERM that follows is
    ignored, so the error (not an interruption) reaches the entry point."""
    result = _run_snippet("""
        import os, signal
        from engine.preemption import StopFlag, job_starting, on_sigterm
        job_starting()
        signal.signal(signal.SIGTERM, on_sigterm)
        stop = StopFlag()
        stop.install()
        try:
            try:
                raise RuntimeError("Connection closed by peer")
            finally:
                stop.restore()
                os.kill(os.getpid(), signal.SIGTERM)
        except RuntimeError as exc:
            print("kept:", exc)
    """)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.strip() == "kept: Connection closed by peer"


def test_sigterm_before_the_job_started_says_sigterm():
    result = _run_snippet("""
        import os, signal, time
        from engine.cli import run_main

        def main(argv):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)

        run_main(main)
    """)
    assert result.returncode == 143, (result.returncode, result.stderr)
    assert result.stderr.strip() == ("interrupted: stopped by SIGTERM before the job started; "
                                     "nothing was written")


@pytest.mark.parametrize("handling", ["JobSignals", "handler only"])
def test_sigterm_swallowed_in_a_weakref_callback_is_sent_again(handling):
    """A SIGTERM whose handler runs inside a weakref callback (importlib's module-lock callbacks
    during an import): Python reports the Terminated as "Exception ignored" and goes on. With
    the handler alone the job ran on (1 of 150 SIGTERMs in the fault suite, sent while a job
    imported tensorboard); JobSignals sends the signal again and the job stops."""
    install = ("signals = JobSignals()" if handling == "JobSignals"
               else "signal.signal(signal.SIGTERM, on_sigterm)")
    result = _run_snippet(f"""
        import signal
        from engine.preemption import JobSignals, on_sigterm
        from tests.signal_helpers import swallowed_sigterm_stops
        {install}
        swallowed_sigterm_stops()
    """)
    assert result.returncode == 0, (result.returncode, result.stderr)
    if handling == "JobSignals":
        assert result.stdout.splitlines() == ["swallowed", "stopped"], result.stdout
        assert "Exception ignored" not in result.stderr, result.stderr
    else:   # Python's behaviour that makes JobSignals necessary (were it to change, this says so)
        assert result.stdout.splitlines() == ["swallowed", "ran on"], result.stdout
        assert "Exception ignored" in result.stderr and "Terminated" in result.stderr


def test_a_signal_arriving_while_the_resend_is_set_up_is_not_lost():
    """The resend hook runs Python code (it starts a thread); a SIGTERM handled there (another
    one, or the resend itself when starting its thread took longer than its delay on a loaded
    machine: seen in the mini runner's test) raised inside the hook, where Python swallows it
    with no hook to report to, and the resend was lost with it. Now the hook notes signals and
    its resend waits until the hook has returned."""
    result = _run_snippet("""
        import os, signal, threading
        from engine.preemption import JobSignals
        from tests.signal_helpers import spin, swallowed_sigterm_stops
        signals = JobSignals()
        start = threading.Thread.start
        sent = []

        def start_after_a_sigterm(thread):
            if not sent:                 # the first thread the hook starts: a SIGTERM meets it
                sent.append(1)
                os.kill(os.getpid(), signal.SIGTERM)
                spin()                   # the handler runs here, inside the hook
            start(thread)

        threading.Thread.start = start_after_a_sigterm
        swallowed_sigterm_stops()
    """)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.splitlines() == ["swallowed", "stopped"], (result.stdout, result.stderr)
    assert "Exception ignored" not in result.stderr, result.stderr

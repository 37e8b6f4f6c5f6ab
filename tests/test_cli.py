"""engine.cli: every user-facing error is a user_errors.UserError, reported as one line."""

import pytest

from engine.cli import final_line
from user_errors import UserError


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

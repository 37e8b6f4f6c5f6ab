"""Entry-point wrapper: user-fixable errors end as one clear line and exit status 2, no traceback."""

from __future__ import annotations

import sys
from typing import Callable


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is the whole story for the user."""
    from config import ConfigError
    from dataloaders.splits import DatasetError
    from dataloaders.synthetic import SyntheticDatasetError
    from dataloaders.video import VideoDecodeError
    from engine.checkpoint import CheckpointError, CheckpointWriteError
    from engine.errors import TrainingError
    return (ConfigError, DatasetError, VideoDecodeError, CheckpointError, CheckpointWriteError,
            TrainingError, SyntheticDatasetError)


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Call ``main(argv)``; turn the project's user errors into ``error: ...`` and exit code 2."""
    errors = user_errors()
    try:
        code = main(argv)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)

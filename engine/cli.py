"""Entry-point wrapper: user-fixable errors end as one clear line and exit status 2, no traceback;
a lost peer process of a multi-process job ends as one clear line and exit status 1."""

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
    except Exception as exc:
        from engine.distributed import is_peer_failure, peer_failure_message
        if not is_peer_failure(exc):
            raise
        # a traceback into DDP internals would hide the one fact that matters: a peer is gone
        print(f"error: {peer_failure_message(exc)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)

"""Errors raised by the training engines; each message says what happened, where, and what to do."""

from user_errors import UserError


class TrainingError(UserError, RuntimeError):
    """A training run stopped for a reason the user must look at."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; no checkpoint was written from that step."""


class TooManyBadVideosError(TrainingError):
    """More than the allowed fraction of one batch's videos failed to decode."""


class RunFolderError(TrainingError):
    """The run folder cannot be used: a file, not writable, in use, or holding another run."""


class NonFiniteWeightsError(TrainingError):
    """Weights or features hold NaN or infinite values; nothing was saved or reported from them."""


class JobInterrupted(Exception):
    """Ctrl-C (or SIGTERM) ended a job; the message says what the run folder kept. ``status``
    is the exit status the entry point ends with (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, status: int = 130):
        super().__init__(message)
        self.status = status

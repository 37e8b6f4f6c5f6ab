"""Errors raised by the training engines; each message says what happened, where, and what to do."""


class TrainingError(RuntimeError):
    """A training run stopped for a reason the user must look at."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; no checkpoint was written from that step."""


class TooManyBadVideosError(TrainingError):
    """More than the allowed fraction of one batch's videos failed to decode."""

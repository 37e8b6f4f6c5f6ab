"""The one base class of errors whose message is the whole story for the user.

A user error is something the user can fix (a bad setting, a missing or unreadable dataset, video
or checkpoint, a run that stopped for a stated reason): the entry points print its message as one
``error: ...`` line and exit with status 2, without a traceback (engine.cli). Each module keeps its
own named subclass (config.ConfigError, dataloaders.splits.DatasetError, ...), which also keeps
its former built-in base, so existing ``except ValueError`` / ``except RuntimeError`` still match.

This module imports nothing from the project, so every layer can use it.
"""


class UserError(Exception):
    """An error the user can fix; its message says what happened, where, and what to do."""

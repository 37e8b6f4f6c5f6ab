"""TCLR losses: instance, local-local and global-local contrast (spec section 5)."""

from losses.tclr import (
    NUM_VIEWS,
    TERM_NAMES,
    global_local,
    ic_local,
    local_local,
    nt_xent,
    resolve_weights,
    tclr_loss,
)

__all__ = [
    "NUM_VIEWS",
    "TERM_NAMES",
    "global_local",
    "ic_local",
    "local_local",
    "nt_xent",
    "resolve_weights",
    "tclr_loss",
]

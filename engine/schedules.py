"""Learning-rate schedules as pure functions of (epoch, loss history).

The release's pretraining schedule (TCLR_SPEC section 6): the first epochs use lr times
warm-up factors [0.01, 0.05, 0.1, 0.5, 1.0]; after that, whenever the epoch's mean training loss has
not improved for ``patience`` epochs, the lr is divided by 10.

The release's classifier rule (linear_eval/train.py, TCLR_SPEC section 7) is a different one:
see classifier_update. The consecutive pretraining rule stays available for the classifiers as
``--lr-rule consecutive``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class PlateauState:
    """What the plateau rule remembers between epochs (saved in checkpoints)."""

    scale: float = 1.0          # current multiplier of the base lr after plateau drops
    best_loss: float = math.inf
    epochs_since_best: int = 0
    history: list = field(default_factory=list)   # mean training loss of each finished epoch

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best_loss": self.best_loss,
                "epochs_since_best": self.epochs_since_best, "history": list(self.history)}

    @classmethod
    def from_state_dict(cls, d: dict) -> "PlateauState":
        return cls(scale=float(d["scale"]), best_loss=float(d["best_loss"]),
                   epochs_since_best=int(d["epochs_since_best"]), history=list(d["history"]))


def plateau_update(state: PlateauState, epoch_loss: float, *, patience: int, factor: float,
                   active: bool = True) -> PlateauState:
    """Record an epoch's mean loss; shrink the scale after ``patience`` epochs without improvement.

    Args:
        state: the state before this epoch's loss is known (not modified).
        epoch_loss: mean training loss of the epoch that just finished.
        patience: epochs without improvement that trigger a drop.
        factor: multiplier applied to the scale on a drop (0.1 in the release).
        active: False during warm-up: the loss is recorded, no drop can happen.
    Returns:
        the new state.
    """
    new = PlateauState(state.scale, state.best_loss, state.epochs_since_best,
                       state.history + [float(epoch_loss)])
    if epoch_loss < new.best_loss:
        new.best_loss = float(epoch_loss)
        new.epochs_since_best = 0
    else:
        new.epochs_since_best += 1
    if active and new.epochs_since_best >= patience:
        new.scale *= factor
        new.epochs_since_best = 0
    return new


CLASSIFIER_LR_RULES = ("release", "consecutive")


def classifier_update(state: PlateauState, epoch_loss: float, trained_lr: float, *, base_lr: float,
                      patience: int, factor: float, min_lr: float,
                      rule: str = "release") -> tuple[PlateauState, bool]:
    """The classifiers' lr rule after one epoch: the new state and whether training stops.

    rule="release" (linear_eval/train.py): a counter grows by 1 after every epoch whose loss is
    above the best so far (an equal loss counts as an improvement and becomes the best); an
    improvement does NOT reset it. When it reaches ``patience`` the lr is multiplied by ``factor``
    and the counter restarts at 0. Training stops after the first epoch that was trained at an lr
    below ``min_lr`` (so with 1e-2, factor 0.1 and min_lr 1e-5 one epoch runs at 1e-6).
    rule="consecutive": plateau_update (``patience`` epochs in a row without a strictly lower
    loss), and training stops before an lr below ``min_lr`` would be used.

    Args:
        state: the state before this epoch's loss is known (not modified).
        epoch_loss: mean training loss of the epoch that just finished.
        trained_lr: the lr that epoch ran at.
        base_lr: the configured lr (the next lr is base_lr * new state.scale).
        patience, factor, min_lr: as above (3, 0.1, 1e-5 in the release).
        rule: "release" or "consecutive".
    Returns:
        (new state, stop after this epoch).
    """
    if rule not in CLASSIFIER_LR_RULES:
        raise ValueError(f"lr rule must be one of {CLASSIFIER_LR_RULES}, got {rule!r}")
    below = min_lr * (1 - 1e-9)  # 1e-2 * 0.1**3 = 1.0000000000000002e-05 is not below 1e-5
    if rule == "consecutive":
        new = plateau_update(state, epoch_loss, patience=patience, factor=factor)
        return new, base_lr * new.scale < below
    new = PlateauState(state.scale, state.best_loss, state.epochs_since_best,
                       state.history + [float(epoch_loss)])
    if epoch_loss > new.best_loss:
        new.epochs_since_best += 1
    else:
        new.best_loss = float(epoch_loss)
    if new.epochs_since_best >= patience:
        new.scale *= factor
        new.epochs_since_best = 0
    return new, trained_lr < below


def release_lr(epoch: int, base_lr: float, warmup: Sequence[float], state: PlateauState) -> float:
    """Learning rate of ``epoch`` under the release's schedule (warm-up, then plateau drops)."""
    if epoch < len(warmup):
        return base_lr * warmup[epoch]
    return base_lr * state.scale


def cosine_lr(epoch: int, step_frac: float, base_lr: float, warmup: Sequence[float],
              total_epochs: int, final_frac: float = 0.0) -> float:
    """Warm-up factors for the first epochs, then cosine decay to ``final_frac * base_lr``.

    ``step_frac`` in [0, 1) is the position inside the epoch, so the decay is smooth per step.
    """
    if epoch < len(warmup):
        return base_lr * warmup[epoch]
    span = max(1, total_epochs - len(warmup))
    t = min(1.0, (epoch - len(warmup) + step_frac) / span)
    return base_lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

"""The release's schedule as a table; cosine endpoints."""

import math

import pytest

from engine.schedules import PlateauState, cosine_lr, plateau_update, release_lr

WARMUP = (0.01, 0.05, 0.1, 0.5, 1.0)


def run_release(losses, base=1e-3, patience=9):
    """lr of every epoch given each epoch's mean loss (the loss is known after the epoch)."""
    state, lrs = PlateauState(), []
    for epoch, loss in enumerate(losses):
        lrs.append(release_lr(epoch, base, WARMUP, state))
        state = plateau_update(state, loss, patience=patience, factor=0.1,
                               active=epoch + 1 >= len(WARMUP))
    return lrs, state


def test_warmup_table():
    lrs, _ = run_release([5.0, 4.0, 3.0, 2.0, 1.0, 0.9])
    assert lrs == pytest.approx([1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-3])


@pytest.mark.parametrize("losses, expected_drops_at", [
    # improving every epoch: never drops
    ([10 - 0.1 * i for i in range(30)], []),
    # flat after epoch 5: 9 epochs without improvement after the best (epoch 5) -> drop for epoch 15
    ([5, 4, 3, 2, 1.5, 1.0] + [1.0] * 20, [15, 24]),
])
def test_plateau_drops(losses, expected_drops_at):
    lrs, _ = run_release(losses)
    drops = [e for e in range(1, len(lrs)) if lrs[e] < lrs[e - 1] and e >= len(WARMUP)]
    assert drops == expected_drops_at
    assert all(math.isclose(lrs[e] / lrs[e - 1], 0.1) for e in drops)


def test_no_drop_during_warmup_even_if_loss_rises():
    lrs, state = run_release([1.0, 2.0, 3.0, 4.0, 5.0])
    assert lrs == pytest.approx([1e-5, 5e-5, 1e-4, 5e-4, 1e-3]) and state.scale == 1.0


def test_state_round_trip():
    _, state = run_release([3, 2, 1, 1, 1, 1])
    assert PlateauState.from_state_dict(state.state_dict()) == state


def test_cosine_endpoints():
    assert cosine_lr(0, 0.0, 1.0, WARMUP, 20) == pytest.approx(0.01)
    assert cosine_lr(5, 0.0, 1.0, WARMUP, 20) == pytest.approx(1.0)
    assert cosine_lr(19, 0.999, 1.0, WARMUP, 20) == pytest.approx(0.0, abs=1e-3)

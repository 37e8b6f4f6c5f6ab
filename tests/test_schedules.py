"""The release's schedule as a table; cosine endpoints."""

import math

import pytest

from engine.schedules import (PlateauState, classifier_update, cosine_lr, plateau_update,
                              release_lr)

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


# Classifier lr rule (linear_eval/train.py; lr 1e-2, patience 3, min_lr 1e-5), worked out by hand.
# release: counter +1 after every epoch above the best loss, never reset by an improvement (an
# equal loss is an improvement); at 3 the next epoch runs at lr/10 and the counter restarts; stop
# after the first epoch trained below 1e-5.
#   epoch  loss  best after  counter after  lr trained
#     0    2.00    2.00          0            1e-2
#     1    2.10    2.00          1            1e-2
#     2    1.90    1.90          1            1e-2   (improvement: no reset)
#     3    1.95    1.90          2            1e-2
#     4    1.80    1.80          2            1e-2
#     5    1.85    1.80          3 -> 0       1e-2   (drop for epoch 6)
#     6    1.70    1.70          0            1e-3
#   7-9    1.75    1.70          1, 2, 3 -> 0 1e-3   (drop for epoch 10)
#    10    1.70    1.70          0            1e-4   (equal: improvement)
#  11-13   1.71, 1.72, 1.73      1, 2, 3 -> 0 1e-4   (drop for epoch 14)
#  14-16   1.80    1.70          1, 2, 3 -> 0 1e-5   (1e-5 is not below 1e-5: go on)
#    17    1.80                               1e-6   -> stop after it: 18 epochs
# consecutive (today's rule before issue 15): reset on a strictly lower loss, stop before 1e-6:
#   drops after epochs 9 (7, 8, 9 without improvement), 12 (10 equal, 11, 12), 15, 18 -> stop.
CLASSIFIER_LOSSES = [2.0, 2.1, 1.9, 1.95, 1.8, 1.85, 1.7, 1.75, 1.75, 1.75, 1.7, 1.71, 1.72, 1.73,
                     1.8, 1.8, 1.8, 1.8, 1.8, 1.8]
RELEASE_LRS = [1e-2] * 6 + [1e-3] * 4 + [1e-4] * 4 + [1e-5] * 3 + [1e-6]
CONSECUTIVE_LRS = [1e-2] * 10 + [1e-3] * 3 + [1e-4] * 3 + [1e-5] * 3


def run_classifier(losses, rule):
    """lr trained at in each epoch, until the rule stops (the loop of engine.classify._fit)."""
    state, lrs = PlateauState(), []
    for loss in losses:
        lrs.append(1e-2 * state.scale)
        state, stop = classifier_update(state, loss, lrs[-1], base_lr=1e-2, patience=3,
                                        factor=0.1, min_lr=1e-5, rule=rule)
        if stop:
            return lrs
    raise AssertionError("the rule never stopped")


@pytest.mark.parametrize("rule, expected", [("release", RELEASE_LRS),
                                            ("consecutive", CONSECUTIVE_LRS)])
def test_classifier_lr_rule_table(rule, expected):
    assert run_classifier(CLASSIFIER_LOSSES, rule) == pytest.approx(expected, rel=1e-9)


def test_classifier_lr_rule_rejects_unknown_rule():
    with pytest.raises(ValueError, match="consecutive"):
        classifier_update(PlateauState(), 1.0, 1e-2, base_lr=1e-2, patience=3, factor=0.1,
                          min_lr=1e-5, rule="plateau")

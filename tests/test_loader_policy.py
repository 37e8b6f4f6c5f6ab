"""Training loaders: the last partial batch (kept in one process as the release, dropped under
torchrun) and its steps per epoch."""

from types import SimpleNamespace

import pytest
import torch

from engine.common import make_loader
from engine.distributed import DistInfo


class Items(torch.utils.data.Dataset):
    """n items; training keys are (index, item seed) pairs (EpochSeededSampler)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key) -> int:
        return key[0] if isinstance(key, tuple) else key


def _cfg(per_device_batch: int, drop_last: bool = False) -> SimpleNamespace:
    return SimpleNamespace(seed=0, per_device_batch=per_device_batch, drop_last=drop_last,
                           data=SimpleNamespace(num_workers=0))


def _steps(num_items, global_batch, world=1, rank=0, drop_last=False, min_last_batch=1):
    dist = DistInfo(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
    loader, _ = make_loader(Items(num_items), _cfg(global_batch // world, drop_last), dist,
                            train=True, min_last_batch=min_last_batch)
    return len(loader), [len(b) for b in loader][-1]


# steps per epoch and size of the last batch, by hand: 9,537 UCF101 split-1 videos / 40 =
# 238 full batches + 17 (the release: 239 steps); under torchrun the shards hold
# floor(9537 / 2) = 4768 videos = 238 full batches of 20 + 8, dropped.
@pytest.mark.parametrize("args, expected", [
    ((9537, 40), (239, 17)),
    ((9537, 40, 1, 0, True), (238, 40)),                 # --drop-last true
    ((9537, 40, 2, 0), (238, 20)),                       # torchrun, 2 processes
    ((9537, 40, 2, 1), (238, 20)),
    ((81, 40, 1, 0, False, 2), (2, 40)),                 # pretraining: a lone last video dropped
    ((82, 40, 1, 0, False, 2), (3, 2)),
    ((81, 40), (3, 1)),                                  # classifier: even one clip is kept
    ((80, 40), (2, 40)),
])
def test_last_partial_batch(args, expected):
    assert _steps(*args) == expected


def test_evaluation_loader_never_drops():
    dist = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    loader, _ = make_loader(Items(81), _cfg(40, drop_last=True), dist, train=False)
    assert [len(b) for b in loader] == [40, 40, 1]

"""Datasets: item layout, exact frame selection, seeding, bad-video policy, collate."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from dataloaders import video as V
from dataloaders.batching import (augment_pretrain_batch, collate_clips, collate_multiclip,
                                  collate_pretrain)
from dataloaders.datasets import (ClipDataset, EpochSeededSampler, MultiClipDataset,
                                  TCLRPretrainDataset, _decode_clips, item_seed, seed_worker)
from dataloaders.sampling import pad_tclr_indices, tclr_frame_indices
from dataloaders.splits import DatasetError
from tests.videos import decode_index, make_video, sequential_frames, write_bytes, write_truncated

S = 16


@pytest.fixture(scope="module")
def vids(tmp_path_factory):
    """Good, short, truncated and broken videos (64x48 px)."""
    d = tmp_path_factory.mktemp("ds")
    good = [make_video(str(d / f"good{i}.avi"), 80 + 10 * i, fourcc="MJPG") for i in range(3)]
    long_one = make_video(str(d / "long.avi"), 160, fourcc="XVID")
    return {
        "good": good,
        "long": long_one,
        "short": make_video(str(d / "short.avi"), 40, fourcc="MJPG"),
        "edge": make_video(str(d / "edge.avi"), 60, fourcc="MJPG"),   # 60 frames: padding needed
        "truncated": write_truncated(long_one, str(d / "truncated.avi"), 0.6),       # usable
        "truncated_short": write_truncated(good[0], str(d / "truncated_short.avi"), 0.5),
        "empty": write_bytes(str(d / "empty.avi"), b""),
        "text": write_bytes(str(d / "text.avi"), b"not a video\n" * 50),
        "missing": str(d / "missing.avi"),
    }


def items_equal(a, b):
    return all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a
               if k != "params")


def test_pretrain_item_layout_and_determinism(vids):
    videos = [(p, 0) for p in vids["good"]]
    ds = TCLRPretrainDataset(videos, size=S, seed=3)
    item = ds[(1, 1234)]
    assert item["clips"].shape == (2, 5, 3, 16, S, S) and item["clips"].dtype == torch.float32
    assert item["index"] == 1 and item["failures"] == []
    assert items_equal(item, ds[(1, 1234)])
    assert not torch.equal(item["clips"], ds[(1, 1235)]["clips"])
    assert not torch.equal(item["clips"][0], item["clips"][1])  # two independent augmentations


def test_pretrain_frames_are_the_spec_indices(vids, monkeypatch):
    """Device mode ships the raw clips: check each frame's encoded index against the spec."""
    videos = [(vids["edge"], 0), (vids["good"][0], 0)]
    ds = TCLRPretrainDataset(videos, size=S, augment_on="device")
    edge = ds[(0, 1)]["frames"]                                        # [5, 16, 3, H, W]
    sparse, dense = pad_tclr_indices(*tclr_frame_indices(60, 0), 60)   # start 0, mirror padded
    got = [[decode_index(f.permute(1, 2, 0).numpy()) for f in clip] for clip in edge]
    assert got == [sparse.tolist()] + dense.tolist()
    frames = ds[(1, 7)]["frames"]
    got = np.array([[decode_index(f.permute(1, 2, 0).numpy()) for f in clip] for clip in frames])
    start = got[0, 0]
    assert 0 <= start <= 80 - 65
    np.testing.assert_array_equal(got[0], start + 4 * np.arange(16))
    np.testing.assert_array_equal(got[1:], start + 16 * np.arange(4)[:, None] + np.arange(16))


def test_device_mode_gives_the_cpu_result(vids):
    videos = [(p, 0) for p in vids["good"]]
    cpu = TCLRPretrainDataset(videos, size=S, augment_on="cpu")
    dev = TCLRPretrainDataset(videos, size=S, augment_on="device")
    keys = [(0, 11), (2, 12)]
    batch = collate_pretrain([dev[k] for k in keys])
    assert batch["frames"].shape == (2, 5, 16, 3, 48, 64) and batch["frames"].dtype == torch.uint8
    assert len(batch["params"]) == 2 * 2 * 5
    out = augment_pretrain_batch(batch, torch.device("cpu"), size=S, color="bgr")
    expected = collate_pretrain([cpu[k] for k in keys])["clips"]
    assert out.shape == expected.shape == (2, 2, 5, 3, 16, S, S)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_color_ops_default_is_the_release_on_every_path(vids):
    """Pretraining (CPU and device augmentation) and classifier training run PIL's RGB colour
    formulas on the stored BGR channels by default, as the release; true_channels differs."""
    videos = [(p, 0) for p in vids["good"]]
    keys = [(0, 11), (2, 12)]
    default = collate_pretrain([TCLRPretrainDataset(videos, size=S)[k] for k in keys])["clips"]
    release = TCLRPretrainDataset(videos, size=S, color_ops="release")
    true = TCLRPretrainDataset(videos, size=S, color_ops="true_channels")
    assert torch.equal(default, collate_pretrain([release[k] for k in keys])["clips"])
    assert not torch.allclose(default, collate_pretrain([true[k] for k in keys])["clips"], atol=1e-3)
    dev = TCLRPretrainDataset(videos, size=S, augment_on="device")
    batch = collate_pretrain([dev[k] for k in keys])
    torch.testing.assert_close(augment_pretrain_batch(batch, torch.device("cpu"), size=S), default,
                               atol=1e-6, rtol=0)

    clip_keys = [(0, seed) for seed in range(12)]  # weak colour ops are rarer: several draws
    default = torch.stack([ClipDataset(videos, size=S)[k]["clip"] for k in clip_keys])
    release = ClipDataset(videos, size=S, color_ops="release")
    true = ClipDataset(videos, size=S, color_ops="true_channels")
    assert torch.equal(default, torch.stack([release[k]["clip"] for k in clip_keys]))
    assert not torch.allclose(default, torch.stack([true[k]["clip"] for k in clip_keys]), atol=1e-3)
    with pytest.raises(ValueError, match="color_ops"):
        ClipDataset(videos, color_ops="bgr")


def test_bad_videos_are_substituted_and_reported(vids):
    bad = ["empty", "text", "missing", "short", "truncated_short"]
    videos = [(vids[name], 0) for name in bad] + [(vids["good"][0], 0)]
    ds = TCLRPretrainDataset(videos, size=S)
    item = ds[(0, 5)]
    assert item["index"] == 5                                           # the first good one after 0
    assert [path for path, _ in item["failures"]] == [vids[name] for name in bad]
    reasons = dict(item["failures"])
    assert "empty file" in reasons[vids["empty"]]
    assert "file not found" in reasons[vids["missing"]]
    assert reasons[vids["short"]] == "too short for TCLR sampling: 40 decodable frames, 57 needed"
    batch = collate_pretrain([ds[(i, i)] for i in range(4)])
    assert batch["clips"].shape[0] == 4                                 # the batch never shrinks
    assert len(batch["failures"]) == 5 + 4 + 3 + 2


def test_all_bad_raises_dataset_error_naming_every_file(vids):
    videos = [(vids[name], 0) for name in ("empty", "missing", "text")]
    ds = TCLRPretrainDataset(videos, size=S, max_retries=2)
    with pytest.raises(DatasetError) as info:
        ds[0]
    for name in ("empty", "missing", "text"):
        assert vids[name] in str(info.value)


def test_overstating_header_redraws_for_the_real_length(vids):
    path = vids["truncated"]
    real = len(sequential_frames(path))
    assert 65 < real < V.probe_video(path).frame_count
    ds = TCLRPretrainDataset([(path, 0)], size=S)
    for seed in range(3):
        V._REAL_FRAME_COUNTS.pop(path, None)
        first = ds[(0, seed)]
        second = ds[(0, seed)]                     # now with the real count cached in this process
        assert first["failures"] == [] and torch.equal(first["clips"], second["clips"])
    with V.VideoReader(path) as reader:
        decoded, indices, _ = _decode_clips(reader, np.random.default_rng(0), ds.sampler)
    assert indices.max() < real and decoded.real_frame_count in (None, real)


def test_epoch_seeded_sampler_and_worker_independence(vids):
    videos = [(p, 0) for p in vids["good"]] * 2
    ds = TCLRPretrainDataset(videos, size=S)
    sampler = EpochSeededSampler(SequentialSampler(ds), seed=9)
    keys0 = list(sampler)
    assert keys0[2] == (2, item_seed(9, 0, 2))
    sampler.set_epoch(1)
    assert [k[0] for k in sampler] == list(range(6)) and list(sampler) != keys0

    def run(workers):
        loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=workers,
                            collate_fn=collate_pretrain, worker_init_fn=seed_worker)
        return torch.cat([b["clips"] for b in loader])
    assert torch.equal(run(0), run(2))


def test_epoch_seeded_sampler_forwards_set_epoch_to_distributed_sampler():
    base = DistributedSampler(list(range(10)), num_replicas=2, rank=1, shuffle=True, seed=0)
    sampler = EpochSeededSampler(base, seed=0)
    sampler.set_epoch(3)
    assert base.epoch == 3 and len(sampler) == 5
    assert [k[0] for k in sampler] == list(base)


def test_plain_integer_keys_differ_across_workers_and_epochs(vids):
    ds = TCLRPretrainDataset([(vids["good"][0], 0)] * 4, size=S)
    torch.manual_seed(0)
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_pretrain,
                        worker_init_fn=seed_worker)
    epoch1 = [b["clips"] for b in loader]
    epoch2 = [b["clips"] for b in loader]
    flat = epoch1 + epoch2
    assert all(not torch.equal(flat[i], flat[j]) for i in range(8) for j in range(i))


def test_clip_dataset(vids):
    videos = [(vids["good"][1], 4), (vids["missing"], 5), (vids["short"], 6)]
    ds = ClipDataset(videos, size=S, augment="weak")
    item = ds[(0, 1)]
    assert item["clip"].shape == (3, 16, S, S) and item["label"] == 4 and item["failures"] == []
    item = ds[(1, 1)]                                   # missing -> the short (40 frames) one
    assert ds[(2, 1)]["failures"] == []
    assert item["index"] == 2 and item["label"] == 6 and len(item["failures"]) == 1
    plain = ClipDataset(videos, size=S, augment="none")
    batch = collate_clips([plain[(0, 3)], plain[(2, 3)]])
    assert batch["clip"].shape == (2, 3, 16, S, S) and batch["label"].tolist() == [4, 6]


def test_multiclip_dataset_decodes_once_and_raises_on_bad_videos(vids, monkeypatch):
    videos = [(vids["long"], 2), (vids["text"], 3)]
    ds = MultiClipDataset(videos, num_clips=5, size=S)
    calls = []
    original = V.VideoReader.decode
    monkeypatch.setattr(V.VideoReader, "decode", lambda self, i: calls.append(1) or original(self, i))
    item = ds[0]
    assert len(calls) == 1
    assert item["clips"].shape == (5, 3, 16, S, S) and item["label"] == 2 and item["video_id"] == 0
    batch = collate_multiclip([item, item])
    assert batch["clips"].shape == (2, 5, 3, 16, S, S) and batch["video_id"].tolist() == [0, 0]
    with pytest.raises(DatasetError, match="never skips"):
        ds[1]


def test_multiclip_starts_and_mask_of_a_very_short_video(tmp_path):
    """24 frames, 10 clips: starts 0..9 (start_i = i, the release); clips 8 and 9 have 8 real
    frames, too few to pad: masked out (copies of clip 0), the video is scored on clips 0..7."""
    path = make_video(str(tmp_path / "v24.avi"), 24, fourcc="MJPG")
    item = MultiClipDataset([(path, 1)], num_clips=10, size=S)[0]
    assert item["clip_mask"].tolist() == [True] * 8 + [False] * 2
    assert torch.equal(item["clips"][8], item["clips"][0])
    assert not torch.equal(item["clips"][7], item["clips"][0])  # start 7, not 0
    batch = collate_multiclip([item, item])
    assert batch["clip_mask"].shape == (2, 10) and not batch["clip_mask"][:, 8:].any()
    longer = make_video(str(tmp_path / "v50.avi"), 50, fourcc="MJPG")
    assert MultiClipDataset([(longer, 0)], num_clips=10, size=S)[0]["clip_mask"].all()


def test_constructor_checks(vids):
    with pytest.raises(DatasetError, match="empty"):
        TCLRPretrainDataset([])
    with pytest.raises(ValueError):
        TCLRPretrainDataset([(vids["good"][0], 0)], augment_on="gpu")
    with pytest.raises(ValueError):
        TCLRPretrainDataset([(vids["good"][0], 0)], num_local=3)


def test_on_the_synthetic_dataset(tiny_ucf):
    """build_video_list + every dataset on the generated UCF101-layout dataset."""
    from dataloaders.splits import build_video_list
    train, classes = build_video_list("synthetic", str(tiny_ucf), 1, "train")
    test, _ = build_video_list("ucf101", str(tiny_ucf), 1, "test")
    assert len(classes) == 4 and train and test
    item = TCLRPretrainDataset(train, size=S)[(0, 1)]
    assert item["clips"].shape == (2, 5, 3, 16, S, S) and item["failures"] == []
    clip = ClipDataset(train, size=S)[(1, 2)]
    assert clip["clip"].shape == (3, 16, S, S) and clip["label"] == train[1][1]
    assert MultiClipDataset(test, num_clips=3, size=S)[0]["clips"].shape == (3, 3, 16, S, S)


@pytest.fixture
def used_indices(monkeypatch):
    """Records the padded frame indices every dataset item is built from (the positions it takes
    from the decoded frames), so the tests below see what the datasets actually sample."""
    from dataloaders import datasets as dsm
    seen = []
    original = dsm._pool_positions

    def spy(decoded, indices):
        seen.append(np.asarray(indices).tolist())
        return original(decoded, indices)
    monkeypatch.setattr(dsm, "_pool_positions", spy)
    return seen


def test_pinned_index_tables_through_the_datasets(tmp_path, used_indices):
    """Literal index tables for fixed item seeds: the samplers must keep drawing these exactly.

    The random starts were recorded once (seeded numpy draws); the rest follows the spec by hand:
    TCLR sparse start + 4 i and dense starts start + 16 j; clips at stride 2; evaluation starts
    int(linspace(0, N - 42, C)) (80 frames, 5 clips: 0, 9.5, 19, 28.5, 38) and start_i = i when
    negative; mirror padding p -> 2 (v - 1) - p."""
    v80 = make_video(str(tmp_path / "v80.avi"), 80, fourcc="MJPG")
    v60 = make_video(str(tmp_path / "v60.avi"), 60, fourcc="MJPG")
    v24 = make_video(str(tmp_path / "v24.avi"), 24, fourcc="MJPG")
    tclr = TCLRPretrainDataset([(v80, 0)], size=S, augment_on="device")
    for key, start in [((0, 1234), 6), ((0, 7), 14)]:
        tclr[key]
        table = used_indices.pop()
        assert table[0] == [start + 4 * i for i in range(16)]
        assert table[1:] == [[start + 16 * j + i for i in range(16)] for j in range(4)]
    TCLRPretrainDataset([(v60, 0)], size=S)[(0, 5)]           # N <= 64: start 0, mirror padded
    assert used_indices.pop() == [[0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 52],
                                  list(range(16)), list(range(16, 32)), list(range(32, 48)),
                                  list(range(48, 60)) + [58, 57, 56, 55]]
    clips = ClipDataset([(v80, 0)], size=S)
    for seed, start in [(1, 1), (2, 30), (3, 19)]:
        clips[(0, seed)]
        assert used_indices.pop() == [[start + 2 * i for i in range(16)]]
    ClipDataset([(v24, 0)], size=S)[(0, 9)]
    assert used_indices.pop() == [[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 20, 18, 16, 14]]
    item = MultiClipDataset([(v80, 0)], num_clips=5, size=S)[0]
    assert [clip[0] for clip in used_indices.pop()] == [0, 9, 19, 28, 38]
    assert item["clip_mask"].all()
    item = MultiClipDataset([(v24, 0)], num_clips=10, size=S)[0]
    table = used_indices.pop()
    mirrored = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 20, 18, 16, 14]
    assert table[0] == mirrored and table[7] == [7, 9, 11, 13, 15, 17, 19, 21, 23, 21, 19, 17, 15,
                                                 13, 11, 9]
    assert table[8] == table[9] == mirrored                    # too short to pad: copies of clip 0
    assert item["clip_mask"].tolist() == [True] * 8 + [False] * 2


def test_build_dataset_reads_every_setting_from_the_data_config(vids):
    """build_dataset is the one unpacking of cfg.data: each kind gets the config's values."""
    import dataclasses

    from config import DataConfig
    from dataloaders.augment import EVAL_CROP
    from dataloaders.datasets import build_dataset
    assert DataConfig().eval_crop == EVAL_CROP == 0.8 and DataConfig().eval_flip is False
    d = DataConfig(clip_len=8, sparse_stride=2, num_local=2, train_stride=3, resolution=S,
                   color="rgb", color_ops="true_channels", augment_on="device", eval_crop=0.5,
                   eval_flip=True)
    videos = [(vids["good"][0], 3)]
    pre = build_dataset(d, "pretrain", videos, 5)
    assert isinstance(pre, TCLRPretrainDataset) and pre.seed == 5 and pre.augment_on == "device"
    assert (pre.sampler.clip_len, pre.sampler.sparse_stride, pre.sampler.num_local) == (8, 2, 2)
    assert (pre.size, pre.color, pre.color_ops) == (S, "rgb", "true_channels")
    assert pre[(0, 1)]["frames"].shape[:2] == (3, 8)
    train = build_dataset(d, "train", videos, 6)
    assert isinstance(train, ClipDataset) and train.augment == "weak" and train.seed == 6
    assert (train.sampler.clip_len, train.sampler.stride, train.size, train.color,
            train.color_ops) == (8, 3, S, "rgb", "true_channels")
    test = build_dataset(d, "eval", videos, 0, num_clips=4)
    assert isinstance(test, MultiClipDataset) and test.sampler.num_clips == 4
    assert (test.sampler.clip_len, test.sampler.stride, test.crop, test.flip) == (8, 3, 0.5, True)
    plain = MultiClipDataset(videos, num_clips=4, clip_len=8, stride=3, size=S, color="rgb",
                             crop=0.5, flip=True)
    assert torch.equal(test[0]["clips"], plain[0]["clips"])
    unflipped = build_dataset(dataclasses.replace(d, eval_flip=False), "eval", videos, 0,
                              num_clips=4)[0]["clips"]
    assert torch.equal(unflipped.flip(-1), test[0]["clips"])
    with pytest.raises(ValueError, match="kind"):
        build_dataset(d, "test", videos, 0)
    with pytest.raises(ValueError, match="num_clips"):
        build_dataset(d, "eval", videos, 0)
    with pytest.raises(ValueError, match="num_clips"):
        build_dataset(d, "train", videos, 0, num_clips=2)


def test_pretrain_input_gives_the_same_model_input_for_both_augment_places(vids):
    from dataloaders.batching import pretrain_input
    videos = [(p, 0) for p in vids["good"]]
    keys = [(0, 11), (1, 12)]
    cpu = collate_pretrain([TCLRPretrainDataset(videos, size=S)[k] for k in keys])
    dev = collate_pretrain([TCLRPretrainDataset(videos, size=S, augment_on="device")[k]
                            for k in keys])
    assert "clips" in cpu and "frames" in dev and "clips" not in dev
    torch.testing.assert_close(pretrain_input(dev, torch.device("cpu"), size=S),
                               pretrain_input(cpu, torch.device("cpu"), size=S), atol=1e-6, rtol=0)

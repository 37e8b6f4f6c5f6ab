"""Table-driven tests of the clip samplers (spec sections 1 and 7)."""
import numpy as np
import pytest

from dataloaders.sampling import (EvalClipSampler, RandomClipSampler, TCLRSampler, clip_indices,
                                  eval_clip_starts, min_eval_frames, min_tclr_frames, mirror_pad,
                                  pad_tclr_indices, sample_clip_start, sample_tclr_start,
                                  tclr_frame_indices)
from dataloaders.video import VideoDecodeError, VideoTooShortError


def release_mirror(clip: list, length: int) -> list:
    """The release's padding, written as it reads: clip + clip[::-1][1:remaining + 1]."""
    return clip + clip[::-1][1:length - len(clip) + 1]


@pytest.mark.parametrize("frames, start, sparse_first, sparse_last, dense_starts", [
    (200, 0, 0, 60, [0, 16, 32, 48]),
    (200, 10, 10, 70, [10, 26, 42, 58]),
    (175, 110, 110, 170, [110, 126, 142, 158]),
    (65, 0, 0, 60, [0, 16, 32, 48]),
    (40, 0, 0, 60, [0, 16, 32, 48]),  # unpadded: indices may pass the end
])
def test_tclr_frame_indices_table(frames, start, sparse_first, sparse_last, dense_starts):
    sparse, dense = tclr_frame_indices(frames, start)
    assert sparse.dtype == np.int64 and dense.dtype == np.int64
    assert sparse.shape == (16,) and dense.shape == (4, 16)
    np.testing.assert_array_equal(sparse, start + 4 * np.arange(16))
    assert (sparse[0], sparse[-1]) == (sparse_first, sparse_last)
    assert dense[:, 0].tolist() == dense_starts
    np.testing.assert_array_equal(np.diff(dense, axis=1), 1)
    # the dense clips tile the global clip's 64 frames; dense clip j covers sparse frames 4j..4j+3
    np.testing.assert_array_equal(np.sort(dense.ravel()), start + np.arange(64))
    for j in range(4):
        assert set(sparse[4 * j:4 * j + 4]) <= set(dense[j])


@pytest.mark.parametrize("frames, start", [(200, 136), (100, 36), (64, 1), (30, 1), (200, -1)])
def test_tclr_frame_indices_rejects_impossible_starts(frames, start):
    with pytest.raises(ValueError):
        tclr_frame_indices(frames, start)


def test_generalised_settings():
    sparse, dense = tclr_frame_indices(100, 3, clip_len=8, sparse_stride=2, num_local=2)
    np.testing.assert_array_equal(sparse, 3 + 2 * np.arange(8))
    np.testing.assert_array_equal(dense, [3 + np.arange(8), 11 + np.arange(8)])
    with pytest.raises(ValueError):
        tclr_frame_indices(100, 0, clip_len=16, sparse_stride=4, num_local=3)


@pytest.mark.parametrize("frames, low, high", [(30, 0, 0), (64, 0, 0), (65, 0, 0), (66, 0, 1),
                                               (100, 0, 35), (175, 0, 110)])
def test_sample_tclr_start_range(frames, low, high):
    rng = np.random.default_rng(0)
    starts = {sample_tclr_start(frames, rng) for _ in range(3000)}
    assert min(starts) == low and max(starts) == high and len(starts) == high - low + 1


def test_tclr_sampler_is_reproducible_and_draws_the_spec_layout():
    sampler = TCLRSampler()
    a, valid = sampler(150, np.random.default_rng(7))
    b, _ = sampler(150, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    start = a[0, 0]
    assert a.shape == (5, 16) and a.dtype == np.int64 and valid.tolist() == [True] * 5
    assert 0 <= start <= 150 - 65
    assert a[0].tolist() == [start + 4 * i for i in range(16)]
    assert a[1:].tolist() == [[start + 16 * j + i for i in range(16)] for j in range(4)]


@pytest.mark.parametrize("frames, expected_sparse_tail, expected_last_dense_tail", [
    (64, [56, 60], [62, 63]),              # N = span: start 0, nothing to pad
    (60, [56, 52], [58, 57, 56, 55]),      # sparse valid 15 -> p 15 takes 2 * 14 - 15 = 13 (52)
    (57, [56, 52], [55, 54, 53, 52, 51, 50, 49]),  # the fewest frames TCLR can use: 9 real dense
])
def test_tclr_sampler_pads_short_videos(frames, expected_sparse_tail, expected_last_dense_tail):
    out, _ = TCLRSampler()(frames, np.random.default_rng(0))
    assert out[0, -len(expected_sparse_tail):].tolist() == expected_sparse_tail
    assert out[4, -len(expected_last_dense_tail):].tolist() == expected_last_dense_tail
    assert out.max() < frames


def test_tclr_sampler_refuses_too_short_videos_naming_the_minimum():
    sampler = TCLRSampler()
    assert sampler.min_frames == 57
    with pytest.raises(VideoTooShortError) as info:
        sampler(56, np.random.default_rng(0))
    assert info.value.reason == "too short for TCLR sampling: 56 decodable frames, 57 needed"
    with pytest.raises(ValueError, match="num_local"):
        TCLRSampler(num_local=3)


@pytest.mark.parametrize("indices, frames, min_valid, expected", [
    ([0, 1, 2, 3, 4, 5], 4, 2, [0, 1, 2, 3, 2, 1]),            # a b c d -> a b c d c b
    (list(range(16)), 14, 14, list(range(14)) + [12, 11]),
    (list(range(16)), 16, 16, list(range(16))),
    (list(range(0, 64, 4)), 57, 14, list(range(0, 57, 4)) + [52]),
    (list(range(48, 64)), 57, 8, list(range(48, 57)) + [55, 54, 53, 52, 51, 50, 49]),
])
def test_mirror_pad_table(indices, frames, min_valid, expected):
    out = mirror_pad(indices, frames, min_valid)
    assert out.tolist() == expected
    valid = [i for i in indices if i < frames]
    assert out.tolist() == release_mirror(valid, len(indices))


@pytest.mark.parametrize("indices, frames, min_valid", [
    (list(range(16)), 13, 14),          # too few for the global clip
    (list(range(48, 64)), 55, 8),       # 7 real frames
    (list(range(48, 64)), 56, 8),       # 8 real frames: the mirror reaches only 15 (as the release)
    (list(range(4)), 0, 1),
])
def test_mirror_pad_refuses(indices, frames, min_valid):
    with pytest.raises(VideoTooShortError) as info:
        mirror_pad(indices, frames, min_valid)
    assert isinstance(info.value, VideoDecodeError) and "mirror padding needs" in info.value.reason


def test_pad_tclr_matches_the_release_for_every_short_length():
    for frames in range(1, 66):
        sparse, dense = tclr_frame_indices(frames, 0)
        valid_sparse = [i for i in sparse.tolist() if i < frames]
        valid_last = [i for i in dense[3].tolist() if i < frames]
        release_ok = (frames > 56 and len(release_mirror(valid_sparse, 16)) == 16
                      and len(release_mirror(valid_last, 16)) == 16)
        try:
            padded_sparse, padded_dense = pad_tclr_indices(sparse, dense, frames)
        except VideoTooShortError:
            assert not release_ok, frames
            continue
        assert release_ok, frames
        assert padded_sparse.tolist() == release_mirror(valid_sparse, 16)
        assert padded_dense[3].tolist() == release_mirror(valid_last, 16)
        assert padded_sparse.max() < frames and padded_dense.max() < frames


def test_min_tclr_frames():
    assert min_tclr_frames() == 57
    assert min_tclr_frames(clip_len=8, sparse_stride=4, num_local=4) == 29


@pytest.mark.parametrize("frames, low, high", [(20, 0, 0), (32, 0, 0), (33, 0, 0), (100, 0, 67)])
def test_sample_clip_start_range(frames, low, high):
    rng = np.random.default_rng(1)
    starts = {sample_clip_start(frames, rng) for _ in range(2000)}
    assert min(starts) == low and max(starts) == high


def test_random_clip_sampler_pads_short_videos():
    np.testing.assert_array_equal(clip_indices(5), 5 + 2 * np.arange(16))
    sampler = RandomClipSampler()
    out, valid = sampler(20, np.random.default_rng(0))
    assert out.shape == (1, 16) and valid.tolist() == [True]
    assert out[0].tolist() == release_mirror(list(range(0, 20, 2)), 16)
    assert sampler.min_frames == min_eval_frames() == 17  # 9 real frames at stride 2: 0 .. 16
    assert sampler(17, np.random.default_rng(0))[0][0].tolist() == release_mirror(
        list(range(0, 17, 2)), 16)
    with pytest.raises(VideoTooShortError) as info:
        sampler(16, np.random.default_rng(0))  # 8 of 16 frames
    assert info.value.reason == ("too short for 16-frame clips at stride 2: 16 decodable frames, "
                                 "17 needed")
    assert RandomClipSampler(clip_len=8, stride=4).min_frames == 4 * (5 - 1) + 1  # 5 of 8 frames


@pytest.mark.parametrize("frames, seed, start", [(100, 0, 57), (100, 1, 32), (33, 0, 0), (32, 5, 0)])
def test_random_clip_sampler_starts(frames, seed, start):
    """Starts U{0 .. N - 33} from the generator's first draw (rng.integers(0, N - 32)); 0 for
    N <= 32 without a draw."""
    expected = int(np.random.default_rng(seed).integers(0, frames - 32)) if frames > 32 else 0
    assert expected == start
    out, _ = RandomClipSampler()(frames, np.random.default_rng(seed))
    assert out[0].tolist() == [start + 2 * i for i in range(16)]


# start_i = int(linspace(0, N - 42, C)[i]), and i where that is negative (the release), by hand:
# N = 175: step 133 / 9 = 14.78; N = 50: step 8 / 9 = 0.89; N = 40: 0, -0.22, ..., -0.89 (int 0),
# -1.11 ... -1.78 (int -1 -> 5..8), -2 (-> 9); N = 30: int 0, -1, -2, -4, ..., -12, all but the
# first negative -> i; N = 35, C = 9: 0, -0.875 (int 0), -1.75 (int -1 -> 2), ... -> i.
EVAL_STARTS = [
    (175, 10, [0, 14, 29, 44, 59, 73, 88, 103, 118, 133]),
    (50, 10, [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
    (42, 10, [0] * 10),
    (40, 10, [0, 0, 0, 0, 0, 5, 6, 7, 8, 9]),
    (30, 10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    (35, 9, [0, 0, 2, 3, 4, 5, 6, 7, 8]),
    (100, 9, [0, 7, 14, 21, 29, 36, 43, 50, 58]),                   # step 58 / 8 = 7.25
    (30, 1, [0]),
]


@pytest.mark.parametrize("frames, clips, expected", EVAL_STARTS)
def test_eval_clip_starts(frames, clips, expected):
    out = eval_clip_starts(frames, clips)
    assert out.dtype == np.int64 and out.tolist() == expected


def test_eval_clip_sampler_shape_and_padding():
    sampler = EvalClipSampler()
    out, valid = sampler(175)
    assert out.shape == (10, 16) and out.max() < 175 and valid.all()
    assert out[:, 0].tolist() == EVAL_STARTS[0][2]
    # 24 frames: starts 0..9 (start_i = i); clip i has ceil((24 - i) / 2) real frames: 12, 12, 11,
    # 11, 10, 10, 9, 9, 8, 8. Padding needs 9, so clips 8 and 9 fail as in the release (the video
    # is scored on clips 0..7); they carry a copy of clip 0.
    short, valid = sampler(24)
    assert valid.tolist() == [True] * 8 + [False] * 2
    clip0 = list(range(0, 24, 2)) + [20, 18, 16, 14]
    assert short[0].tolist() == clip0 and short[8].tolist() == clip0 and short[9].tolist() == clip0
    assert short[7].tolist() == list(range(7, 24, 2)) + [21, 19, 17, 15, 13, 11, 9]
    with pytest.raises(VideoTooShortError) as info:
        sampler(16)  # clip 0 has 8 real frames: no clip can be padded
    assert info.value.reason == ("too short for 16-frame clips at stride 2: 16 decodable frames, "
                                 "17 needed")
    assert EvalClipSampler(num_clips=3).draw(80)[:, 0].tolist() == [0, 19, 38]  # linspace(0, 38, 3)

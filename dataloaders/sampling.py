"""Frame-index samplers: TCLR pretraining clips, classifier training clips, evaluation clips.

The datasets run three sampler objects (pytorchvideo's clip-sampler style): TCLRSampler,
RandomClipSampler and EvalClipSampler. Each draws the unpadded indices of its clips for a frame
count (draw), mirror-pads them at the video's real end (pad), and knows the fewest frames it needs
(min_frames). The functions below them are the pieces they compose. Everything returns int64
numpy arrays of frame indices; nothing here decodes. Spec sections 1 and 7:

* TCLR: span = clip_len * sparse_stride frames (64). start ~ U{0 .. N - span - 1} when N > span,
  else 0. Global (sparse) clip: start + sparse_stride * i. Dense clip j: s_j + i with
  s_j = start + j * span / num_local, so that at the defaults (K = sparse_stride = 4) the K dense
  clips tile the span and dense clip j covers timestep j of the global clip's final feature map.
* Mirror padding: a clip whose last frames lie past the end of the video is completed by mirroring its
  own frames backwards (a b c d -> a b c d c b ...) when at least `min_valid` of its frames exist
  (14 of 16 for the global clip, 8 of 16 for the dense clips). The mirror can only reach back
  2 * (valid - 1) positions, so a 16-frame clip needs at least 9 real frames however low min_valid is
  (the release's length check rejects such a sample too). Otherwise VideoTooShortError.
* Classifier clips: clip_len frames at stride 2 from start ~ U{0 .. N - 2 * clip_len - 1}
  (0 when N <= 2 * clip_len), mirror-padded when at least 9 of 16 frames exist (the release: more
  than half).
* Evaluation clips: start_i = int(linspace(0, N - 2 * clip_len - 10, C)[i]), and i where that is
  negative (the release). In very short videos (N < 26 for 10 clips of 16 frames at stride 2) the
  late starts leave too few frames for mirror padding; the release's loader then fails that clip
  and the video is scored on its other clips: pad_eval_clips marks such clips invalid.
"""
from __future__ import annotations

import numpy as np

from dataloaders.video import VideoTooShortError

SPARSE_MIN_VALID = 14  # real frames the global clip needs before mirror padding (of 16)
DENSE_MIN_VALID = 8    # real frames a dense clip needs before mirror padding (of 16)
CLIP_MIN_VALID = 9     # classifier/evaluation clips: more than half of 16 (the release)
EVAL_MARGIN = 10       # the release's evaluation starts stop 10 frames before the last full clip


def scaled_min_valid(clip_len: int, of_16: int) -> int:
    """A threshold stated for 16-frame clips, scaled to clip_len (rounded up): 14 of 16 -> 7 of 8."""
    return -(-clip_len * of_16 // 16)


def tclr_span(clip_len: int = 16, sparse_stride: int = 4) -> int:
    """Frames covered by one TCLR sample (the global clip's span): clip_len * sparse_stride."""
    return clip_len * sparse_stride


def _check_tclr_settings(clip_len: int, sparse_stride: int, num_local: int) -> None:
    span = tclr_span(clip_len, sparse_stride)
    if clip_len < 1 or sparse_stride < 1 or num_local < 1 or span % num_local:
        raise ValueError(f"clip_len={clip_len}, sparse_stride={sparse_stride}, num_local={num_local}: "
                         "all must be >= 1 and num_local must divide clip_len * sparse_stride")


def tclr_frame_indices(num_video_frames: int, start: int, clip_len: int = 16, sparse_stride: int = 4,
                       num_local: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices of one TCLR sample, before mirror padding (spec section 1).

    Args:
        num_video_frames: N, the frame count the start was drawn for.
        start: first frame; 0 <= start <= N - span - 1 when N > span, else 0.
    Returns:
        sparse int64 [clip_len], dense int64 [num_local, clip_len]. Indices may reach past N - 1 when
        N <= span (pad them with pad_tclr_indices).
    Raises:
        ValueError: for an impossible start or settings.
    """
    _check_tclr_settings(clip_len, sparse_stride, num_local)
    span = tclr_span(clip_len, sparse_stride)
    last_start = num_video_frames - span - 1 if num_video_frames > span else 0
    if not 0 <= start <= last_start:
        raise ValueError(f"start {start} outside 0..{last_start} for a {num_video_frames}-frame video")
    steps = np.arange(clip_len, dtype=np.int64)
    sparse = start + sparse_stride * steps                                     # [L]
    offsets = start + (span // num_local) * np.arange(num_local, dtype=np.int64)
    dense = offsets[:, None] + steps[None, :]                                  # [K, L]
    return sparse, dense


def sample_tclr_start(num_video_frames: int, rng: np.random.Generator, clip_len: int = 16,
                      sparse_stride: int = 4) -> int:
    """start ~ U{0 .. N - span - 1} when N > span, else 0 (the release's np.random.randint(0, N - 64))."""
    span = tclr_span(clip_len, sparse_stride)
    if num_video_frames > span:
        return int(rng.integers(0, num_video_frames - span))
    return 0


def mirror_pad(indices, num_video_frames: int, min_valid: int) -> np.ndarray:
    """Completes a clip whose last indices are past the video's end by mirroring it backwards.

    Args:
        indices: int [L], increasing frame indices of one clip.
        num_video_frames: the video's real frame count N.
        min_valid: least number of indices < N for padding to be allowed.
    Returns:
        int64 [L]: indices unchanged where < N; position p >= v (v = valid count) takes the index
        at position 2 * (v - 1) - p.
    Raises:
        VideoTooShortError: fewer than max(min_valid, ceil((L + 1) / 2)) valid indices.
    """
    indices = np.asarray(indices, dtype=np.int64)
    valid = int(np.count_nonzero(indices < num_video_frames))
    length = len(indices)
    if valid == length:
        return indices
    needed = max(min_valid, (length + 2) // 2)
    if valid < needed:
        raise VideoTooShortError(None, f"a {length}-frame clip from frame {int(indices[0])} has only "
                                 f"{valid} of its frames in a {num_video_frames}-frame video; mirror "
                                 f"padding needs {needed}")
    positions = np.arange(length)
    source = np.where(positions < valid, positions, 2 * (valid - 1) - positions)
    return indices[source]


def pad_tclr_indices(sparse, dense, num_video_frames: int, min_sparse: int | None = None,
                     min_dense: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mirror-pads the global clip and every dense clip of a TCLR sample (see mirror_pad).

    Args:
        min_sparse, min_dense: thresholds; None = 14 and 8 of 16, scaled to the clip length.
    Returns:
        sparse int64 [L], dense int64 [K, L], every index < num_video_frames.
    Raises:
        VideoTooShortError: when a clip may not be padded.
    """
    clip_len = len(sparse)
    if min_sparse is None:
        min_sparse = scaled_min_valid(clip_len, SPARSE_MIN_VALID)
    if min_dense is None:
        min_dense = scaled_min_valid(clip_len, DENSE_MIN_VALID)
    sparse = mirror_pad(sparse, num_video_frames, min_sparse)
    dense = np.stack([mirror_pad(clip, num_video_frames, min_dense) for clip in np.asarray(dense)])
    return sparse, dense


def min_tclr_frames(clip_len: int = 16, sparse_stride: int = 4, num_local: int = 4,
                    min_sparse: int | None = None, min_dense: int | None = None) -> int:
    """The fewest frames a video needs to give a TCLR sample (57 at the defaults, as in the release)."""
    span = tclr_span(clip_len, sparse_stride)
    for frames in range(1, span + 1):
        sparse, dense = tclr_frame_indices(frames, 0, clip_len, sparse_stride, num_local)
        try:
            pad_tclr_indices(sparse, dense, frames, min_sparse, min_dense)
            return frames
        except VideoTooShortError:
            continue
    return span + 1


def clip_indices(start: int, clip_len: int = 16, stride: int = 2) -> np.ndarray:
    """int64 [clip_len]: start + stride * i."""
    return start + stride * np.arange(clip_len, dtype=np.int64)


def sample_clip_start(num_video_frames: int, rng: np.random.Generator, clip_len: int = 16,
                      stride: int = 2) -> int:
    """Classifier training start ~ U{0 .. N - clip_len * stride - 1}; 0 when the video is shorter."""
    span = clip_len * stride
    if num_video_frames > span:
        return int(rng.integers(0, num_video_frames - span))
    return 0


def eval_clip_starts(num_video_frames: int, num_clips: int = 10, clip_len: int = 16,
                     stride: int = 2, margin: int = EVAL_MARGIN) -> np.ndarray:
    """Evaluation starts, as the release (linear_eval/dl_linear.py, nn_retrieval/dl_ret.py):
    start_i = int(linspace(0, N - stride * clip_len - margin, C)[i]), and start_i = i (the clip's
    own index, not 0) where that is negative (N < 42 for the defaults).

    Returns:
        int64 [C].
    """
    last = num_video_frames - stride * clip_len - margin
    starts = np.linspace(0, last, num_clips).astype(np.int64)  # astype truncates like int()
    return np.where(starts < 0, np.arange(num_clips), starts)


def pad_eval_clips(indices: np.ndarray, num_video_frames: int, min_valid: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mirror-pads every evaluation clip that can be padded; the others are marked invalid.

    As the release, where a clip too short to pad fails on its own and the video is scored on its
    other clips. Invalid rows receive a copy of the first valid clip so that the array keeps its
    shape; consumers average over the valid clips only (the mask).

    Args:
        indices: int [C, L] unpadded clip indices.
        num_video_frames: the video's real frame count N.
        min_valid: as mirror_pad.
    Returns:
        (padded int64 [C, L], valid bool [C]).
    Raises:
        VideoTooShortError: when no clip can be padded (the message of the first clip).
    """
    padded, valid, first_error = [], [], None
    for clip in np.asarray(indices):
        try:
            padded.append(mirror_pad(clip, num_video_frames, min_valid))
            valid.append(True)
        except VideoTooShortError as error:
            first_error = first_error or error
            padded.append(None)
            valid.append(False)
    if not any(valid):
        raise first_error
    substitute = padded[valid.index(True)]
    rows = [row if ok else substitute for row, ok in zip(padded, valid)]
    return np.stack(rows), np.array(valid)


def min_eval_frames(clip_len: int = 16, stride: int = 2) -> int:
    """The fewest frames a video needs for the evaluation clips (and the classifier's training
    clips, which pad the same way): 17 at 16 frames, stride 2."""
    return RandomClipSampler(clip_len, stride).min_frames


class ClipSampler:
    """What the datasets run: draw(frames, rng) -> unpadded int64 [C, T] for a frame count;
    pad(indices, real frames) -> (padded int64 [C, T], valid bool [C]), raising
    VideoTooShortError when the video cannot give a sample; min_frames, the fewest frames that can.
    sampler(frames, rng) draws and pads at once."""

    min_frames: int

    def draw(self, frames: int, rng: np.random.Generator | None) -> np.ndarray:
        raise NotImplementedError

    def pad(self, indices: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, frames: int, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        return self.pad(self.draw(frames, rng), frames)


class TCLRSampler(ClipSampler):
    """One TCLR pretraining sample: the global clip (row 0) and the K dense clips (rows 1..K).

    Args:
        clip_len, sparse_stride, num_local: T, the global clip's stride, K.
        min_sparse, min_dense: mirror-padding thresholds; None = 14 and 8 of 16, scaled.
    Indices are int64 [1+K, T]. The datasets call draw and pad apart, to draw again when a video
    proves shorter than its header (datasets._decode_clips).
    """

    def __init__(self, clip_len: int = 16, sparse_stride: int = 4, num_local: int = 4,
                 min_sparse: int | None = None, min_dense: int | None = None):
        _check_tclr_settings(clip_len, sparse_stride, num_local)
        self.clip_len, self.sparse_stride, self.num_local = clip_len, sparse_stride, num_local
        self.min_sparse, self.min_dense = min_sparse, min_dense
        self.min_frames = min_tclr_frames(clip_len, sparse_stride, num_local, min_sparse, min_dense)

    def draw(self, frames: int, rng: np.random.Generator) -> np.ndarray:
        """Unpadded indices int64 [1+K, T] for a frame count (one draw from rng: the start)."""
        start = sample_tclr_start(frames, rng, self.clip_len, self.sparse_stride)
        sparse, dense = tclr_frame_indices(frames, start, self.clip_len, self.sparse_stride,
                                           self.num_local)
        return np.concatenate([sparse[None], dense])

    def pad(self, indices: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(padded int64 [1+K, T], valid bool [1+K], all True) for the real frame count.

        Raises:
            VideoTooShortError: a clip may not be padded (names the frames needed).
        """
        try:
            sparse, dense = pad_tclr_indices(indices[0], indices[1:], frames, self.min_sparse,
                                             self.min_dense)
        except VideoTooShortError:
            raise VideoTooShortError(None, f"too short for TCLR sampling: {frames} decodable "
                                     f"frames, {self.min_frames} needed") from None
        return np.concatenate([sparse[None], dense]), np.ones(len(indices), dtype=bool)


class RandomClipSampler(ClipSampler):
    """Classifier training: one clip of clip_len frames at `stride` from a random start (spec 7).

    Args:
        min_valid: real frames needed before mirror padding; None = 9 of 16, scaled to clip_len.
    Indices are int64 [1, T] (one clip).
    """

    def __init__(self, clip_len: int = 16, stride: int = 2, min_valid: int | None = None):
        if clip_len < 1 or stride < 1:
            raise ValueError(f"clip_len={clip_len}, stride={stride}: both must be >= 1")
        self.clip_len, self.stride = clip_len, stride
        self.min_valid = (scaled_min_valid(clip_len, CLIP_MIN_VALID) if min_valid is None
                          else min_valid)
        needed = max(self.min_valid, (clip_len + 2) // 2)  # real frames of a clip from frame 0
        self.min_frames = stride * (needed - 1) + 1

    def too_short(self, frames: int) -> VideoTooShortError:
        """The error for a video whose clips cannot be padded."""
        return VideoTooShortError(None, f"too short for {self.clip_len}-frame clips at stride "
                                  f"{self.stride}: {frames} decodable frames, {self.min_frames} "
                                  "needed")

    def draw(self, frames: int, rng: np.random.Generator) -> np.ndarray:
        """Unpadded indices int64 [1, T] (one draw from rng: the start)."""
        start = sample_clip_start(frames, rng, self.clip_len, self.stride)
        return clip_indices(start, self.clip_len, self.stride)[None]

    def pad(self, indices: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(padded int64 [1, T], valid [True]); VideoTooShortError when it may not be padded."""
        try:
            return mirror_pad(indices[0], frames, self.min_valid)[None], np.ones(1, dtype=bool)
        except VideoTooShortError:
            raise self.too_short(frames) from None


class EvalClipSampler(RandomClipSampler):
    """Evaluation: num_clips clips at the release's evenly spaced starts (eval_clip_starts).

    Draws nothing at random (rng is ignored). A clip too short to pad is marked invalid and holds a
    copy of the first valid clip (pad_eval_clips); a video none of whose clips can be padded raises.
    Indices are int64 [C, T].
    """

    def __init__(self, num_clips: int = 10, clip_len: int = 16, stride: int = 2,
                 min_valid: int | None = None):
        super().__init__(clip_len, stride, min_valid)
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.num_clips = num_clips

    def draw(self, frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        starts = eval_clip_starts(frames, self.num_clips, self.clip_len, self.stride)
        return np.stack([clip_indices(int(s), self.clip_len, self.stride) for s in starts])

    def pad(self, indices: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(padded int64 [C, T], valid bool [C]); VideoTooShortError when no clip can be padded."""
        try:
            return pad_eval_clips(indices, frames, self.min_valid)
        except VideoTooShortError:
            raise self.too_short(frames) from None

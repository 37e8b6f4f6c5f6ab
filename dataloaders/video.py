"""Exact, economical frame decoding with OpenCV (FFmpeg backend).

The frames returned are exactly those that plain sequential decoding (`cv2.VideoCapture.read()` from
frame 0) returns at the requested indices. Two things make that cheap:

* Only the frames up to the last requested index are decoded; frames that are not requested are
  skipped with `grab()` (decoded but neither converted to BGR nor copied).
* Frames before the first requested index are skipped by seeking (`CAP_PROP_POS_FRAMES`) when seeking
  has been verified to be exact for the container and codec: the first time a (file extension,
  fourcc) pair wants to seek in a process, one seeked frame (forwards, then backwards) is compared
  with sequential decoding of the same file, and the verdict is cached for the process. Where the
  verdict is negative, where a video's header proved wrong, or when a seek lands past the end, the
  reader falls back to grab()-skipping from frame 0.

The frame count in the container header is a hint, never trusted: a video can end before the header
says (truncated downloads; the release's logs show UCF101 files whose header overstates). Decoding
stops at the real end; `decode_frames` reports the real count, `read_frames` raises
`VideoDecodeError`, and the clip samplers (dataloaders.sampling) mirror-pad short clips.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from user_errors import UserError

COLORS = ("bgr", "rgb")
SEEK_MODES = ("auto", "never")
# Seeking costs a keyframe search plus decoding from that keyframe; below this index grabbing is as fast.
MIN_SEEK_INDEX = 16
# Largest frame index used when verifying that seeking is exact (keeps the one-off check cheap).
_VERIFY_MAX_INDEX = 40

# Per-process caches: (extension, fourcc) -> seeking verified exact; path -> real frame count, learnt
# when a decode ran into the end of the video; paths whose header overstated their length (never
# seeked in again: a truncated container has no index to seek by).
_SEEK_EXACT: dict[tuple[str, str], bool] = {}
_REAL_FRAME_COUNTS: dict[str, int] = {}
_HEADER_OVERSTATES: set[str] = set()


class VideoDecodeError(UserError):
    """A video that cannot give the requested frames.

    Attributes:
        path: the video file (None when the caller only had frame counts, e.g. the index samplers).
        reason: what went wrong, in words.
    """

    def __init__(self, path: str | None, reason: str):
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path or 'video'}: {self.reason}"


class VideoTooShortError(VideoDecodeError):
    """The video has too few frames for the clip sampler (even with mirror padding)."""


@dataclass(frozen=True)
class VideoInfo:
    """Header information (frame_count is the header's claim, not verified)."""

    path: str
    frame_count: int
    width: int
    height: int
    fps: float
    fourcc: str


@dataclass
class DecodedFrames:
    """Frames decoded for a set of requested indices.

    Attributes:
        frames: uint8 [n, H, W, 3] for `indices` (sorted, unique); n < number requested when the
            video ended first.
        indices: int64 [n], the frame indices of `frames`.
        real_frame_count: the video's true number of frames when decoding ran into its end, else None
            (the video is then at least indices[-1] + 1 frames long).
    """

    frames: np.ndarray
    indices: np.ndarray
    real_frame_count: int | None

    def take(self, wanted) -> np.ndarray:
        """Frames at `wanted` (any order, repeats allowed): uint8 [len(wanted), H, W, 3].

        Raises:
            KeyError: when an index was not decoded.
        """
        wanted = np.asarray(wanted, dtype=np.int64).reshape(-1)
        if wanted.size == 0:
            return self.frames[:0]
        pos = np.searchsorted(self.indices, wanted)
        pos = np.minimum(pos, max(len(self.indices) - 1, 0))
        if len(self.indices) == 0 or not np.array_equal(self.indices[pos], wanted):
            missing = sorted(set(wanted.tolist()) - set(self.indices.tolist()))
            raise KeyError(f"frames {missing[:5]} were not decoded")
        return self.frames[pos]


def _fourcc_text(value: float) -> str:
    code = int(value) & 0xFFFFFFFF
    text = code.to_bytes(4, "little").decode("latin-1")
    return text if text.isprintable() else f"0x{code:08x}"


def _unopenable_reason(path: str) -> str:
    """Why OpenCV could not open `path`, as specifically as the file system tells."""
    if not os.path.exists(path):
        return "file not found"
    if os.path.isdir(path):
        return "is a directory, not a video file"
    if not os.access(path, os.R_OK):
        return "permission denied (not readable by this user)"
    size = os.path.getsize(path)
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as handle:
        head = handle.read(16)
    kind = "looks like text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary"
    return (f"OpenCV/FFmpeg cannot open it ({size} bytes, {kind}, starts with {head[:8]!r}): not a "
            "video, a broken container, or a codec this OpenCV build lacks")


class VideoReader:
    """One opened video; decodes requested frames exactly (see the module docstring).

    Args:
        path: video file.
        color: "bgr" (OpenCV's order; the default everywhere in this project) or "rgb".
        seek: "auto" (seek when verified exact for this container/codec) or "never" (grab()-skip).
        threads: FFmpeg decoding threads per reader (1: DataLoader workers give the parallelism).
    Raises:
        VideoDecodeError: when the file cannot be opened, with the reason.
    """

    def __init__(self, path: str, color: str = "bgr", seek: str = "auto", threads: int = 1):
        if color not in COLORS:
            raise ValueError(f"color must be one of {COLORS}, got {color!r}")
        if seek not in SEEK_MODES:
            raise ValueError(f"seek must be one of {SEEK_MODES}, got {seek!r}")
        self.path, self.color, self.seek, self.threads = path, color, seek, threads
        self._cap = self._open()
        self.info = VideoInfo(
            path=path,
            frame_count=int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            width=int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(self._cap.get(cv2.CAP_PROP_FPS)),
            fourcc=_fourcc_text(self._cap.get(cv2.CAP_PROP_FOURCC)),
        )
        self._pos = 0  # index of the frame the next grab()/read() returns

    def _open(self) -> cv2.VideoCapture:
        if not os.path.isfile(self.path) or os.path.getsize(self.path) == 0:
            raise VideoDecodeError(self.path, _unopenable_reason(self.path))
        cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, self.threads])
        if not cap.isOpened():
            cap.release()
            raise VideoDecodeError(self.path, _unopenable_reason(self.path))
        return cap

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def known_real_frame_count(self) -> int | None:
        """The real frame count if a decode in this process ran into the end of this file."""
        return _REAL_FRAME_COUNTS.get(self.path)

    def _rewind(self) -> None:
        """Reopens the file so that the next frame is frame 0 (cheaper and safer than seeking to 0)."""
        self._cap.release()
        self._cap = self._open()
        self._pos = 0

    def _seek(self, index: int) -> bool:
        """Prepares reading frame `index` next: by seeking (verified-exact formats, far enough ahead),
        else by reopening when going backwards and grabbing forward (done by the caller's loop).

        Returns:
            False when a seek happened: a read failing right after it may mean a seek past the real
            end rather than the end itself, so the caller re-decodes sequentially. True otherwise.
        """
        if index == self._pos:
            return True
        if index > self._pos and index - self._pos < MIN_SEEK_INDEX:
            return True  # grabbing forward is as cheap as seeking
        if self.seek == "never" or index < MIN_SEEK_INDEX or self.path in _HEADER_OVERSTATES:
            if index < self._pos:
                self._rewind()
            return True
        if not _seek_verified(self.path, self.info, self.threads):
            if index < self._pos:
                self._rewind()
            return True
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        self._pos = index
        return False  # a seek happened: the caller must treat a failed read as "unknown", not "end"

    def decode(self, indices) -> DecodedFrames:
        """Decodes the frames at `indices` (any order, repeats allowed) once each.

        Returns:
            DecodedFrames for the sorted unique indices; frames past the real end are missing and
            real_frame_count is then set.
        Raises:
            VideoDecodeError: when not even the first requested frame's predecessors can be decoded
                and the video is empty.
            ValueError: for negative indices.
        """
        wanted = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
        if wanted.size and wanted[0] < 0:
            raise ValueError(f"frame indices must be >= 0, got {wanted[0]}")
        try:
            result = self._decode_sorted(wanted, allow_seek=True)
            if result is None:  # a seek past the real end or an inexact seek: decode from frame 0
                self._rewind()
                result = self._decode_sorted(wanted, allow_seek=False)
        except cv2.error as error:
            raise VideoDecodeError(self.path, f"OpenCV error while decoding: {error}") from None
        if result.real_frame_count is not None:
            _remember_real_count(self.path, result.real_frame_count, self.info.frame_count)
            if result.real_frame_count == 0:
                raise VideoDecodeError(self.path, "no frame could be decoded (corrupt or truncated file)")
        return result

    def _decode_sorted(self, wanted: np.ndarray, allow_seek: bool) -> DecodedFrames | None:
        """Decodes sorted unique `wanted` into one preallocated array (no stacking copy).

        Returns None when a read right after a seek failed (past the end, or an inexact seek).
        """
        buffer = np.empty((len(wanted), max(self.info.height, 1), max(self.info.width, 1), 3), np.uint8)
        sequential = True
        if wanted.size:
            if allow_seek:
                sequential = self._seek(int(wanted[0]))
            elif wanted[0] < self._pos:
                self._rewind()
        for row, target in enumerate(wanted.tolist()):
            while self._pos < target:
                if not self._cap.grab():
                    return self._ended(wanted, buffer, row, sequential)
                self._pos += 1
            ok, frame = self._cap.read(buffer[row])
            if not ok:
                return self._ended(wanted, buffer, row, sequential)
            self._pos += 1
            sequential = True  # a frame after the seek point decoded: later failures are real ends
            if not np.shares_memory(frame, buffer):  # the header's frame size was wrong
                buffer = self._resized_buffer(buffer, frame.shape, row)
                buffer[row] = frame
            if self.color == "rgb":
                cv2.cvtColor(buffer[row], cv2.COLOR_BGR2RGB, dst=buffer[row])
        return DecodedFrames(buffer, wanted, None)

    def _resized_buffer(self, buffer: np.ndarray, shape: tuple, filled: int) -> np.ndarray:
        if filled:
            raise VideoDecodeError(self.path, f"frame size changed mid-video to {shape[1]}x{shape[0]}")
        return np.empty((len(buffer), *shape), np.uint8)

    def _ended(self, wanted, buffer, decoded: int, sequential: bool) -> DecodedFrames | None:
        if not sequential:
            return None
        return DecodedFrames(buffer[:decoded], wanted[:decoded], self._pos)


def _seek_verified(path: str, info: VideoInfo, threads: int) -> bool:
    """Whether CAP_PROP_POS_FRAMES seeking is exact for this file's (extension, fourcc), checked once.

    The check decodes the first frames of `path` sequentially and compares them with frames reached by
    a forward and then a backward seek. A file too short to check decides nothing (False, not cached).
    """
    key = (os.path.splitext(path)[1].lower(), info.fourcc)
    if key in _SEEK_EXACT:
        return _SEEK_EXACT[key]
    targets = [min(_VERIFY_MAX_INDEX, info.frame_count - 1), MIN_SEEK_INDEX // 2 + 1]
    if targets[0] <= targets[1]:
        return False
    reference = {}
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    try:
        for index in range(targets[0] + 1):
            ok, frame = cap.read()
            if not ok:
                return False  # shorter than its header: decide on another file
            if index in targets:
                reference[index] = frame
    finally:
        cap.release()
    exact = True
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    try:
        for index in targets:  # a forward seek from frame 0, then a backward one
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            exact = exact and ok and np.array_equal(frame, reference[index])
    finally:
        cap.release()
    _SEEK_EXACT[key] = exact
    return exact


def _remember_real_count(path: str, real: int, header: int) -> None:
    _REAL_FRAME_COUNTS[path] = real
    if real < header:
        _HEADER_OVERSTATES.add(path)


def decode_frames(path: str, indices, color: str = "bgr", seek: str = "auto") -> DecodedFrames:
    """Decodes the frames at `indices` of `path`, stopping at the real end of the video.

    Returns:
        DecodedFrames (frames for the sorted unique indices that exist, and the real frame count when
        the video ended before the last requested index).
    Raises:
        VideoDecodeError: unreadable file (reason given) or no decodable frame at all.
    """
    with VideoReader(path, color=color, seek=seek) as reader:
        return reader.decode(indices)


def read_frames(path: str, indices, color: str = "bgr", seek: str = "auto") -> np.ndarray:
    """The frames of `path` at `indices`, exactly as sequential OpenCV decoding returns them.

    Args:
        path: video file.
        indices: frame indices (any order, repeats allowed).
        color: "bgr" or "rgb" channel order of the result.
        seek: "auto" (verified-exact seeking) or "never".
    Returns:
        uint8 [len(indices), H, W, 3].
    Raises:
        VideoDecodeError: unreadable file, or an index at or past the real end of the video (the
            message gives the real and the header frame counts). For mirror padding of short clips use
            decode_frames and dataloaders.sampling.mirror_pad.
    """
    with VideoReader(path, color=color, seek=seek) as reader:
        decoded = reader.decode(indices)
        if decoded.real_frame_count is not None:
            wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
            raise VideoDecodeError(
                path, f"frame {int(wanted.max())} requested but the video has only "
                f"{decoded.real_frame_count} decodable frames (header says {reader.info.frame_count})")
        return decoded.take(indices)


def probe_video(path: str) -> VideoInfo:
    """Header information of `path` (the frame count is the header's claim).

    Raises:
        VideoDecodeError: when the file cannot be opened.
    """
    with VideoReader(path) as reader:
        return reader.info


def count_frames(path: str, remember: bool = True) -> int:
    """The real number of frames of `path`: frames that sequential decoding returns (grab() to the end).

    Args:
        path: video file.
        remember: keep the count in this process's cache of real frame counts (the readers use it
            for a video whose header overstates); False for a file that may still be rewritten
            under the same path (the synthetic generator's own check of what it wrote).
    Raises:
        VideoDecodeError: when the file cannot be opened.
    """
    with VideoReader(path) as reader:
        count = 0
        try:
            while reader._cap.grab():
                count += 1
        except cv2.error as error:
            raise VideoDecodeError(path, f"OpenCV error while decoding: {error}") from None
        if remember:
            _remember_real_count(path, count, reader.info.frame_count)
    return count

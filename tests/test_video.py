"""read_frames / decode_frames against plain sequential OpenCV decoding, on generated videos."""
import os

import numpy as np
import pytest

from dataloaders import video as V
from dataloaders.video import (VideoDecodeError, VideoReader, count_frames, decode_frames,
                               probe_video, read_frames)
from tests.videos import (EXTENSION, decode_index, make_video, sequential_frames, write_bytes,
                          write_truncated)

CODECS = ["XVID", "mp4v", "MJPG"]
NUM_FRAMES = 60


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """{fourcc: (path, sequentially decoded frames)} for 60-frame 64x48 videos."""
    folder = tmp_path_factory.mktemp("videos")
    out = {}
    for fourcc in CODECS:
        path = make_video(str(folder / f"v_{fourcc}{EXTENSION[fourcc]}"), NUM_FRAMES, fourcc=fourcc)
        out[fourcc] = (path, sequential_frames(path))
    return out


@pytest.fixture(scope="module")
def truncated(tmp_path_factory, videos):
    """An AVI cut to its first half: its header still claims 60 frames."""
    folder = tmp_path_factory.mktemp("truncated")
    path = write_truncated(videos["XVID"][0], str(folder / "half.avi"))
    return path, sequential_frames(path)


class CountingCapture:
    """Wraps a cv2.VideoCapture and counts grab() and read() calls."""

    def __init__(self, cap):
        self.cap, self.grabs, self.reads = cap, 0, 0

    def grab(self):
        self.grabs += 1
        return self.cap.grab()

    def read(self, *args):
        self.reads += 1
        return self.cap.read(*args)

    def __getattr__(self, name):
        return getattr(self.cap, name)


@pytest.mark.parametrize("fourcc", CODECS)
def test_fixture_frames_carry_their_index(videos, fourcc):
    _, frames = videos[fourcc]
    assert len(frames) == NUM_FRAMES
    assert [decode_index(f) for f in frames] == list(range(NUM_FRAMES))


@pytest.mark.parametrize("seek", ["auto", "never"])
@pytest.mark.parametrize("fourcc", CODECS)
@pytest.mark.parametrize("indices", [
    [0], [59], [3, 4, 5, 6], [40, 2, 33, 2, 59, 17], [20, 20, 20], list(range(16, 60, 4)),
    [58, 57, 56, 30, 31, 1],
])
def test_read_frames_equals_sequential_decoding(videos, fourcc, seek, indices):
    path, reference = videos[fourcc]
    out = read_frames(path, indices, seek=seek)
    assert out.dtype == np.uint8 and out.shape == (len(indices), 48, 64, 3)
    np.testing.assert_array_equal(out, reference[indices])


def test_random_index_sets_both_seek_modes(videos):
    rng = np.random.default_rng(0)
    for fourcc in CODECS:
        path, reference = videos[fourcc]
        for _ in range(10):
            indices = rng.integers(0, NUM_FRAMES, size=rng.integers(1, 20))
            np.testing.assert_array_equal(read_frames(path, indices), reference[indices])


def test_rgb_is_bgr_reversed(videos):
    path, reference = videos["XVID"]
    np.testing.assert_array_equal(read_frames(path, [5, 9], color="rgb"), reference[[5, 9]][..., ::-1])


def test_seek_is_verified_once_per_format_and_skips_early_frames(videos):
    path, reference = videos["XVID"]
    with VideoReader(path) as reader:
        reader._cap = CountingCapture(reader._cap)
        decoded = reader.decode([40, 41])
        key = (".avi", reader.info.fourcc)
        counter = reader._cap
    np.testing.assert_array_equal(decoded.frames, reference[[40, 41]])
    assert V._SEEK_EXACT[key] is True
    assert counter.grabs == 0 and counter.reads == 2  # frames 0..39 were not decoded here


def test_inexact_seek_verdict_falls_back_to_grabbing(videos, monkeypatch):
    path, reference = videos["mp4v"]
    with VideoReader(path) as reader:
        monkeypatch.setitem(V._SEEK_EXACT, (".mp4", reader.info.fourcc), False)
        reader._cap = CountingCapture(reader._cap)
        decoded = reader.decode([30, 50])
        assert reader._cap.grabs == 30 + 19 and reader._cap.reads == 2
    np.testing.assert_array_equal(decoded.frames, reference[[30, 50]])


def test_never_decodes_past_the_last_index(videos):
    path, _ = videos["XVID"]
    with VideoReader(path, seek="never") as reader:
        reader.decode([3, 10])
        assert reader._pos == 11


def test_request_past_the_end_raises_with_real_and_header_counts(truncated):
    path, reference = truncated
    real = len(reference)
    assert 0 < real < NUM_FRAMES and probe_video(path).frame_count == NUM_FRAMES
    with pytest.raises(VideoDecodeError) as info:
        read_frames(path, [1, real + 3])
    assert info.value.path == path
    assert f"only {real} decodable frames" in info.value.reason
    assert f"header says {NUM_FRAMES}" in str(info.value)
    np.testing.assert_array_equal(read_frames(path, [0, real - 1]), reference[[0, real - 1]])


def test_decode_frames_returns_partial_window_and_real_count(truncated):
    path, reference = truncated
    real = len(reference)
    decoded = decode_frames(path, range(real - 5, real + 20))
    assert decoded.real_frame_count == real
    assert decoded.indices.tolist() == list(range(real - 5, real))
    np.testing.assert_array_equal(decoded.frames, reference[real - 5:])
    wanted = [real - 1, real - 5, real - 1]
    np.testing.assert_array_equal(decoded.take(wanted), reference[wanted])
    with pytest.raises(KeyError):
        decoded.take([real])


def test_seek_past_real_end_of_overstating_header(truncated):
    path, reference = truncated
    real = len(reference)
    V._REAL_FRAME_COUNTS.pop(path, None)
    V._HEADER_OVERSTATES.discard(path)
    decoded = decode_frames(path, [real + 2, real + 4])  # seeks beyond the end, then re-checks
    assert decoded.real_frame_count == real and len(decoded.frames) == 0
    assert path in V._HEADER_OVERSTATES


def test_count_frames_is_real_and_probe_is_header(videos, truncated):
    assert count_frames(videos["MJPG"][0]) == NUM_FRAMES
    info = probe_video(videos["MJPG"][0])
    assert (info.width, info.height, info.frame_count, info.fourcc) == (64, 48, NUM_FRAMES, "MJPG")
    assert count_frames(truncated[0]) == len(truncated[1])


@pytest.mark.parametrize("name, data, reason", [
    ("empty.avi", b"", "empty file"),
    ("text.avi", b"this is not a video, just some text\n" * 20, "looks like text"),
    ("noise.avi", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), ""),
])
def test_bad_files_raise_with_a_reason(tmp_path, name, data, reason):
    path = write_bytes(str(tmp_path / name), data)
    with pytest.raises(VideoDecodeError) as info:
        read_frames(path, [0])
    assert info.value.path == path and reason in info.value.reason


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(VideoDecodeError, match="file not found"):
        read_frames(str(tmp_path / "nope.avi"), [0])
    with pytest.raises(VideoDecodeError, match="is a directory"):
        probe_video(str(tmp_path))


UNPRIVILEGED_READ = """
import sys
from dataloaders.video import VideoDecodeError, read_frames
try:
    read_frames(sys.argv[1], [0])
except VideoDecodeError as error:
    print("reason:", error.reason)
    sys.exit(0)
print("the file was read")
sys.exit(3)
"""
NOBODY = 65534


def _drop_to_nobody() -> None:
    """preexec_fn: the child gives up root for the conventional 'nobody' user and group."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_unreadable_permissions(videos):
    """A file this user may not read is reported as such. Root reads any file whatever its mode,
    so as root (CI) the read runs in a child process that first drops to the 'nobody' user: the
    real kernel refusal is tested either way. Its limit: that child must be able to read the
    repository and the Python environment (world-readable here); if it cannot even start, the
    test fails with the child's error rather than passing."""
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path
    folder = Path(tempfile.mkdtemp(prefix="tclr-unreadable-"))   # not under root's 0700 tmp_path
    try:
        folder.chmod(0o755)
        path = folder / "locked.avi"
        path.write_bytes(open(videos["XVID"][0], "rb").read())
        path.chmod(0)
        if os.geteuid() != 0:
            with pytest.raises(VideoDecodeError, match="permission denied"):
                read_frames(str(path), [0])
            return
        root = Path(__file__).resolve().parent.parent
        command = [sys.executable, "-c", UNPRIVILEGED_READ, str(path)]
        setpriv = shutil.which("setpriv")
        # setpriv (util-linux) where present: some sandboxes refuse the exec after a preexec_fn
        # setuid that setpriv's own exec passes
        drop = ({"args": [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          *command]} if setpriv else
                {"args": command, "preexec_fn": _drop_to_nobody})
        proc = subprocess.run(**drop, cwd=root, env={**os.environ, "PYTHONPATH": str(root),
                                                     "PYTHONDONTWRITEBYTECODE": "1"},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        assert "reason: permission denied" in proc.stdout, proc.stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_error_pickles_and_bad_arguments(videos):
    import pickle
    error = pickle.loads(pickle.dumps(VideoDecodeError("a.avi", "broken")))
    assert (error.path, error.reason, str(error)) == ("a.avi", "broken", "a.avi: broken")
    with pytest.raises(ValueError):
        read_frames(videos["XVID"][0], [-1])
    with pytest.raises(ValueError):
        read_frames(videos["XVID"][0], [0], color="yuv")
    assert read_frames(videos["XVID"][0], []).shape[0] == 0

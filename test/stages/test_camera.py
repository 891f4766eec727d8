"""Frame sources writing straight into a caller's buffer (a shared-memory loan)."""

from __future__ import annotations

from pathlib import Path

import cv2
from edge_infer_ros.stages.camera import FolderSource, SyntheticSource, VideoFileSource
import numpy as np


def _video(path: Path, frames: int = 4) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), 40 * index + 20, np.uint8))
    writer.release()
    return path


def test_synthetic_renders_into_the_buffer() -> None:
    out = np.zeros((48, 64, 3), np.uint8)
    image = SyntheticSource(64, 48, seed=3).read_into(5, out)
    assert image is out
    np.testing.assert_array_equal(out, SyntheticSource(64, 48, seed=3).read(5))


def test_synthetic_of_another_size_is_returned_as_is() -> None:
    out = np.zeros((10, 10, 3), np.uint8)
    image = SyntheticSource(64, 48, seed=3).read_into(0, out)
    assert image is not out and image.shape == (48, 64, 3) and not out.any()


def test_video_decodes_into_the_buffer_and_loops(tmp_path: Path) -> None:
    path = str(_video(tmp_path / 'clip.avi'))
    plain = VideoFileSource(path)
    expected = [plain.read(i) for i in range(4)]
    source = VideoFileSource(path, loop=True)
    out = np.zeros((48, 64, 3), np.uint8)
    address = out.ctypes.data
    for index in range(6):  # past the end: starts again
        image = source.read_into(index, out)
        assert image is out and out.ctypes.data == address
        np.testing.assert_array_equal(out, expected[index % 4])
    source.close()
    once = VideoFileSource(path, loop=False)
    assert [once.read_into(i, out) is out for i in range(4)] == [True] * 4
    assert once.read_into(4, out) is None


def test_other_sources_read_and_copy(tmp_path: Path) -> None:
    frame = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), frame)
    out = np.zeros_like(frame)
    assert FolderSource(str(tmp_path)).read_into(0, out) is out
    np.testing.assert_array_equal(out, frame)

"""
Frame sources of the camera node: synthetic scene, video file, V4L2 device, folder, bag.

Why plain: opening and reading a source, and failing clearly when it cannot be read, has
nothing to do with ROS. (A robot's own ``sensor_msgs/Image`` topic is the sixth source; the
camera node subscribes to it itself.)
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Optional

import cv2
from edge_infer_ros.core.image import BufferPool
import numpy as np

SOURCE_KINDS = ('synthetic', 'video', 'v4l2', 'folder', 'topic', 'bag')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.pgm', '.tif', '.tiff')
#: The file of a folder source that holds the recorded capture times: one integer stamp in
#: nanoseconds per line, one line per image in name order ('#' comments and blank lines
#: skipped).
TIMESTAMPS_FILE = 'timestamps.txt'


class SourceError(RuntimeError):
    """A source that cannot be opened or read, with the reason."""


class FrameSource(abc.ABC):
    """Something that yields frames on request, in the ROS encoding it declares."""

    #: ROS encoding of what read() returns: the camera node stamps its frames with it
    encoding = 'bgr8'

    @abc.abstractmethod
    def read(self, index: int) -> Optional[np.ndarray]:
        """Return frame ``index`` as (H, W, 3) uint8 BGR, or None when the source is over."""

    def read_into(self, index: int, out: np.ndarray) -> Optional[np.ndarray]:
        """
        Write frame ``index`` into ``out`` (e.g. a shared-memory loan); return ``out``.

        None when the source is over. A frame of another shape is returned as it is (the
        caller then sends it by copy). This default reads and copies; sources that can render
        or decode in place override it.
        """
        frame = self.read(index)
        if frame is None or frame.shape != out.shape:
            return frame
        np.copyto(out, frame)
        return out

    def period_after_s(self, index: int) -> Optional[float]:
        """
        Return the recorded gap (s) between frame ``index`` and the next, None: no recording.

        A recording (a video's frame rate, a folder's timestamps, a bag's receive times) is
        replayed at its own pace (times ``replay_rate``); None lets the camera use ``fps``.
        """
        return None

    def close(self) -> None:
        """Release the device or file."""


class SyntheticSource(FrameSource):
    """The built-in moving scene (the default: runs anywhere, with ground truth)."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        from edge_infer_ros.stages.synthetic import SyntheticScene
        self.scene = SyntheticScene(width=width, height=height, seed=seed)
        self.pool = BufferPool(lambda: np.empty((height, width, 3), np.uint8))

    def read(self, index: int) -> Optional[np.ndarray]:
        """Render frame ``index`` into a pooled buffer no stage still holds."""
        image, _ = self.scene.render(index, out=self.pool.acquire())
        return image

    def read_into(self, index: int, out: np.ndarray) -> Optional[np.ndarray]:
        """Render frame ``index`` straight into ``out`` (no copy)."""
        if out.shape != (self.scene.height, self.scene.width, 3):
            return self.read(index)
        image, _ = self.scene.render(index, out=out)
        return image


class _CaptureSource(FrameSource):
    """Common part of the sources read with OpenCV's VideoCapture."""

    def __init__(self, capture: cv2.VideoCapture, what: str, loop: bool) -> None:
        if not capture.isOpened():
            raise SourceError(f'cannot open {what}')
        self._capture = capture
        self._loop = loop

    def read(self, index: int) -> Optional[np.ndarray]:
        """Grab the next frame (a video file starts again at its end when looping)."""
        ok, frame = self._capture.read()
        if not ok and self._loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        if not ok:
            return None
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return frame

    def read_into(self, index: int, out: np.ndarray) -> Optional[np.ndarray]:
        """Decode the next frame straight into ``out`` when OpenCV can (same size, BGR)."""
        ok, frame = self._capture.read(out)
        if not ok and self._loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read(out)
        if not ok:
            return None
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if frame is not out and frame.shape == out.shape:
            np.copyto(out, frame)  # OpenCV allocated anyway: still one copy, as without a loan
            return out
        return frame

    def close(self) -> None:
        """Release the capture."""
        self._capture.release()


class VideoFileSource(_CaptureSource):
    """A video file, played frame by frame at its own frame rate (once, unless ``loop``)."""

    def __init__(self, path: str, loop: bool = False) -> None:
        if not Path(path).is_file():
            raise SourceError(f'video file {path} not found')
        super().__init__(cv2.VideoCapture(path), f'video file {path}', loop)
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        #: The file's own frame rate (0: it gives none, the camera's fps applies).
        self.file_fps = fps if 0.1 <= fps <= 1000.0 else 0.0

    def period_after_s(self, index: int) -> Optional[float]:
        """Return one frame period of the file's own frame rate."""
        return 1.0 / self.file_fps if self.file_fps else None


class V4L2Source(_CaptureSource):
    """A V4L2 camera (``/dev/videoN`` or its index)."""

    def __init__(self, device: str, width: int, height: int, fps: float) -> None:
        capture = (cv2.VideoCapture(int(device), cv2.CAP_V4L2) if device.isdigit()
                   else cv2.VideoCapture(device, cv2.CAP_V4L2))
        if capture.isOpened():
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            capture.set(cv2.CAP_PROP_FPS, fps)
        super().__init__(capture, f'V4L2 device {device}', loop=False)


class FolderSource(FrameSource):
    """The images of a folder in name order, at its recorded times when it has them."""

    def __init__(self, folder: str, loop: bool = False) -> None:
        directory = Path(folder)
        if not directory.is_dir():
            raise SourceError(f'image folder {folder} not found')
        self._files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f'image folder {folder} holds no images '
                              f'({", ".join(IMAGE_SUFFIXES)})')
        self._loop = loop
        #: Recorded capture times (ns), one per image, from TIMESTAMPS_FILE; empty: none.
        self.times_ns = _read_timestamps(directory / TIMESTAMPS_FILE, len(self._files))

    def period_after_s(self, index: int) -> Optional[float]:
        """Return the recorded gap to the next image (timestamps file), else None."""
        times, count = self.times_ns, len(self._files)
        if not times or (index + 1 >= count and not self._loop):
            return None
        position = index % count
        if position + 1 >= count:  # looping: the last gap again
            return max(0, times[-1] - times[-2]) / 1e9 if count > 1 else None
        return max(0, times[position + 1] - times[position]) / 1e9

    def read(self, index: int) -> Optional[np.ndarray]:
        """Decode the image for frame ``index``; an unreadable file raises SourceError."""
        if index >= len(self._files) and not self._loop:
            return None
        path = self._files[index % len(self._files)]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f'cannot decode image {path}')
        return image


def _read_timestamps(path: Path, count: int) -> list[int]:
    """Read a folder's timestamps file; refuse one that does not fit its images."""
    if not path.is_file():
        return []
    times: list[int] = []
    for number, line in enumerate(path.read_text(errors='replace').splitlines(), 1):
        text = line.split('#', 1)[0].strip()
        if not text:
            continue
        try:
            times.append(int(text))
        except ValueError:
            raise SourceError(f'{path}:{number}: {text[:40]!r} is not an integer stamp in '
                              'ns') from None
    if len(times) != count:
        raise SourceError(f'{path} holds {len(times)} stamps for {count} images (one per '
                          'image, in name order)')
    if any(b < a for a, b in zip(times, times[1:])):
        raise SourceError(f'{path}: stamps go back (they must follow the images in name '
                          'order)')
    return times

"""
Frame sources of the camera node: synthetic scene, video file, V4L2 device, folder of images.

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

SOURCE_KINDS = ('synthetic', 'video', 'v4l2', 'folder', 'topic')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.pgm', '.tif', '.tiff')


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
        self._what = what
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
    """A video file, played frame by frame (looping by default)."""

    def __init__(self, path: str, loop: bool = True) -> None:
        if not Path(path).is_file():
            raise SourceError(f'video file {path} not found')
        super().__init__(cv2.VideoCapture(path), f'video file {path}', loop)


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
    """The images of a folder in name order, looping by default."""

    def __init__(self, folder: str, loop: bool = True) -> None:
        directory = Path(folder)
        if not directory.is_dir():
            raise SourceError(f'image folder {folder} not found')
        self._files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f'image folder {folder} holds no images '
                              f'({", ".join(IMAGE_SUFFIXES)})')
        self._loop = loop

    def read(self, index: int) -> Optional[np.ndarray]:
        """Decode the image for frame ``index``; an unreadable file raises SourceError."""
        if index >= len(self._files) and not self._loop:
            return None
        path = self._files[index % len(self._files)]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f'cannot decode image {path}')
        return image


def open_source(kind: str, uri: str, width: int, height: int, fps: float, seed: int,
                loop: bool) -> FrameSource:
    """Open a source by kind (see SOURCE_KINDS; 'topic' is handled by the node)."""
    if kind == 'synthetic':
        return SyntheticSource(width, height, seed)
    if kind == 'video':
        return VideoFileSource(uri, loop)
    if kind == 'v4l2':
        return V4L2Source(uri or '0', width, height, fps)
    if kind == 'folder':
        return FolderSource(uri, loop)
    raise SourceError(f'unknown source kind {kind!r}: expected one of {", ".join(SOURCE_KINDS)}')

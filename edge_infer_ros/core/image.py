"""
Images in and model tensors out: validation of raw image buffers, and letterbox preprocessing.

Why plain: both run on every frame and both must refuse bad input with a precise reason (a
robot's camera driver can send anything); neither needs ROS, so both are tested directly.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import cv2
from edge_infer_ros.inference.yolo import Letterbox
import numpy as np

#: Encodings accepted on image inputs: name -> (channels, order of colour channels).
ENCODINGS: dict[str, tuple[int, str]] = {
    'bgr8': (3, 'bgr'),
    'rgb8': (3, 'rgb'),
    'bgra8': (4, 'bgr'),
    'rgba8': (4, 'rgb'),
    'mono8': (1, 'mono'),
}

#: Largest frame accepted (pixels): 8K, to refuse absurd sizes before touching the buffer.
MAX_PIXELS = 7680 * 4320


class ImageError(ValueError):
    """An image that cannot be used, with the reason."""


def image_view(height: int, width: int, encoding: str, step: int, data: Any,
               is_bigendian: int = 0) -> np.ndarray:
    """
    Return a read-only (H, W, C) uint8 view of a raw image buffer, or raise ImageError.

    No pixel is copied: the view points into ``data`` (for example ``sensor_msgs/Image.data``).
    Rows padded beyond ``width * channels`` (``step`` larger) are handled by striding.
    """
    if encoding not in ENCODINGS:
        raise ImageError(f'unsupported encoding {encoding!r}: expected one of '
                         f'{", ".join(ENCODINGS)}')
    channels = ENCODINGS[encoding][0]
    if height <= 0 or width <= 0:
        raise ImageError(f'zero-sized image {width}x{height}')
    if height * width > MAX_PIXELS:
        raise ImageError(f'image {width}x{height} is larger than the {MAX_PIXELS} pixels '
                         'accepted')
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageError(f'step {step} is smaller than width*channels = {row_bytes} for '
                         f'{encoding}')
    del is_bigendian  # 8-bit encodings only: byte order does not matter
    buffer = np.frombuffer(data, dtype=np.uint8)
    expected = step * height
    if buffer.size != expected:
        raise ImageError(f'data has {buffer.size} bytes, expected step*height = {expected} '
                         f'({width}x{height} {encoding}, step {step})')
    view = np.lib.stride_tricks.as_strided(
        buffer, shape=(height, width, channels), strides=(step, channels, 1), writeable=False)
    return view


def read_only(array: np.ndarray) -> np.ndarray:
    """Mark an array read-only so no downstream stage can change a shared frame."""
    array.flags.writeable = False
    return array


class BufferPool:
    """
    Reusable arrays for frames handed downstream by reference.

    A buffer is reused only when nothing outside the pool references it any more (a view
    held by a queued envelope keeps its base alive and its reference count up), so a frame
    can never be overwritten while a stage still reads it, however deep the queues. When all
    are in use the pool grows (counted in ``allocations``); in steady state it allocates
    nothing.
    """

    #: References of a free buffer seen by sys.getrefcount: the list, the loop variable and
    #: the call's argument.
    _FREE_REFS = 3

    def __init__(self, make: Callable[[], np.ndarray], initial: int = 2) -> None:
        self._make = make
        self._buffers: list[np.ndarray] = [make() for _ in range(initial)]
        self.allocations = initial

    def acquire(self) -> np.ndarray:
        """Return a buffer nobody else holds (its previous contents are undefined)."""
        for buffer in self._buffers:
            if sys.getrefcount(buffer) <= self._FREE_REFS:
                return buffer
        buffer = self._make()
        self._buffers.append(buffer)
        self.allocations += 1
        return buffer

    def __len__(self) -> int:
        return len(self._buffers)


def frozen_view(buffer: np.ndarray) -> np.ndarray:
    """Return a read-only view of a pooled buffer: nobody writes it, the pool reuses it."""
    view = buffer.view()
    view.flags.writeable = False
    return view


def letterbox_geometry(width: int, height: int, in_w: int,
                       in_h: int) -> tuple[int, int, int, int, Letterbox]:
    """Return the resized size and top-left offset of an image centred in the model input."""
    letterbox = Letterbox.fit(width, height, in_w, in_h)
    new_w = max(1, min(in_w, round(width * letterbox.scale)))
    new_h = max(1, min(in_h, round(height * letterbox.scale)))
    return new_w, new_h, int(letterbox.pad_x), int(letterbox.pad_y), letterbox


class Preprocessor:
    """
    Letterbox resize, colour order, normalisation and HWC->CHW into buffers allocated once.

    Per frame: one resize and one split into planes, both into reused buffers, then one
    contiguous multiply per channel straight into the region of an output tensor from a
    :class:`BufferPool`; a tensor's padding is written only when the geometry it was last
    used with changes. The tensor returned is a read-only view that stays valid for as long as
    the caller holds it.

    Splitting first (OpenCV, SIMD) and scaling by a float32 constant is what makes this cheap:
    a multiply that reads every third byte, or one by a Python float (computed in float64),
    costs two to three times as much at 640x480 -> 320x320.
    """

    #: 1/255 as float32: a Python float would make numpy compute in float64, then cast.
    _SCALE = np.float32(1.0 / 255.0)

    def __init__(self, in_w: int, in_h: int, color_order: str = 'rgb',
                 pad_value: int = 114, dtype: str = 'float32') -> None:
        if color_order not in ('rgb', 'bgr'):
            raise ValueError(f'model colour order must be rgb or bgr, got {color_order!r}')
        self.in_w, self.in_h = in_w, in_h
        self.color_order = color_order
        self._pad = pad_value / 255.0
        self._tensors = BufferPool(lambda: np.empty((1, 3, in_h, in_w), dtype=np.dtype(dtype)))
        self._tensor_geometry: dict[int, tuple[int, int, int, int]] = {}
        self._geometry: Optional[tuple[int, int, int]] = None
        self._resized = np.empty((0, 0, 3), np.uint8)
        self._planes: list[np.ndarray] = []
        self._box = (0, 0, 0, 0)
        self._letterbox = Letterbox(1.0, 0.0, 0.0)
        self.reallocations = 0

    def _prepare(self, width: int, height: int, channels: int) -> None:
        new_w, new_h, left, top, self._letterbox = letterbox_geometry(
            width, height, self.in_w, self.in_h)
        self._box = (left, top, new_w, new_h)
        self._resized = np.empty((new_h, new_w, channels), np.uint8)
        self._planes = [np.empty((new_h, new_w), np.uint8) for _ in range(channels)]
        self._geometry = (width, height, channels)
        self.reallocations += 1

    def __call__(self, image: np.ndarray, encoding: str) -> tuple[np.ndarray, Letterbox]:
        """Fill and return the model tensor for one image, with the letterbox used."""
        height, width = image.shape[:2]
        channels = image.shape[2] if image.ndim == 3 else 1
        if self._geometry != (width, height, channels):
            self._prepare(width, height, channels)
        left, top, new_w, new_h = self._box
        if (new_w, new_h) == (width, height):
            resized = image
        else:
            cv2.resize(image, (new_w, new_h), dst=self._resized, interpolation=cv2.INTER_LINEAR)
            resized = self._resized
        if channels == 1:
            planes = (resized.reshape(new_h, new_w),)
        else:
            planes = self._planes
            cv2.split(resized, planes)
        order = ENCODINGS[encoding][1]
        if order == 'mono':
            sources = (0, 0, 0)
        elif order == self.color_order:
            sources = (0, 1, 2)
        else:
            sources = (2, 1, 0)
        tensor = self._tensors.acquire()
        if self._tensor_geometry.get(id(tensor)) != self._box:
            tensor.fill(self._pad)  # new geometry for this buffer: write its padding once
            self._tensor_geometry[id(tensor)] = self._box
        region = tensor[0, :, top:top + new_h, left:left + new_w]
        for channel, source in enumerate(sources):
            np.multiply(planes[source], self._SCALE, out=region[channel], casting='unsafe')
        return frozen_view(tensor), self._letterbox

    @property
    def tensor_allocations(self) -> int:
        """Tensors allocated so far (flat in steady state)."""
        return self._tensors.allocations

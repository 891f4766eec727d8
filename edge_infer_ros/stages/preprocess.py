"""
Preprocess stage: letterbox resize, colour order, normalisation and HWC->CHW.

Why plain: it runs on every frame, into buffers allocated once; it needs no ROS, so its
output is tested directly against a straightforward reference.
"""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
from edge_infer_ros.core.geometry import Letterbox, letterbox_geometry
from edge_infer_ros.core.image import BufferPool, frozen_view
from edge_infer_ros.core.image_encodings import Converter, image_size, output_channels
import numpy as np


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
                 pad_value: int = 114, dtype: str = 'float32',
                 range16: tuple[int, int] = (0, 65535)) -> None:
        if color_order not in ('rgb', 'bgr'):
            raise ValueError(f'model colour order must be rgb or bgr, got {color_order!r}')
        self.in_w, self.in_h = in_w, in_h
        self.color_order = color_order
        self._pad = pad_value / 255.0
        self._dtype = np.dtype(dtype)
        self._tensors = BufferPool(lambda: np.empty(self.tensor_shape, dtype=self._dtype))
        self._tensor_geometry: dict[int, tuple[int, int, int, int]] = {}
        self._geometry: Optional[tuple[int, int, int]] = None
        self._resized = np.empty((0, 0, 3), np.uint8)
        self._planes: list[np.ndarray] = []
        self._box = (0, 0, 0, 0)
        self._letterbox = Letterbox(1.0, 0.0, 0.0)
        #: raw encodings (YUV, Bayer, 16-bit) to 8-bit, once, into buffers it reuses
        self.converter = Converter(*range16)

    def _prepare(self, width: int, height: int, channels: int) -> None:
        new_w, new_h, left, top, self._letterbox = letterbox_geometry(
            width, height, self.in_w, self.in_h)
        self._box = (left, top, new_w, new_h)
        self._resized = np.empty((new_h, new_w, channels), np.uint8)
        self._planes = [np.empty((new_h, new_w), np.uint8) for _ in range(channels)]
        self._geometry = (width, height, channels)

    @property
    def tensor_shape(self) -> tuple[int, int, int, int]:
        """Shape of the tensors made: (1, 3, height, width)."""
        return (1, 3, self.in_h, self.in_w)

    @property
    def tensor_dtype(self) -> np.dtype:
        """Element type of the tensors made (the model's input type)."""
        return self._dtype

    def __call__(self, image: np.ndarray, encoding: str,
                 out: Optional[np.ndarray] = None) -> tuple[np.ndarray, Letterbox]:
        """
        Fill and return the model tensor for one image, with the letterbox used.

        ``image``: a raw view in ``encoding`` (see :mod:`edge_infer_ros.core.image_encodings`); one
        that is not 8-bit BGR/RGB/mono is converted here, once, into a reused buffer.

        ``out``: a tensor to fill instead of one of the pool's (a shared-memory sample loaned
        by the transport, so the tensor reaches another process without a copy). Its padding
        is written every time: a loaned sample holds whatever an earlier frame left in it.
        """
        if out is not None and (out.shape != self.tensor_shape or out.dtype != self._dtype):
            raise ValueError(f'out must be a {self._dtype} array of shape '
                             f'{list(self.tensor_shape)}, got {out.dtype} {list(out.shape)}')
        width, height = image_size(image, encoding)
        channels = output_channels(encoding)
        if self._geometry != (width, height, channels):
            self._prepare(width, height, channels)
        left, top, new_w, new_h = self._box
        # 16-bit: scaled down at 16 bits, then to 8 at the size needed (a fraction of the pixels)
        image, order = self.converter(image, encoding, (new_w, new_h))
        if image.shape[:2] == (new_h, new_w):
            resized = image
        else:
            cv2.resize(image, (new_w, new_h), dst=self._resized, interpolation=cv2.INTER_LINEAR)
            resized = self._resized
        planes: Sequence[np.ndarray]
        if channels == 1:
            planes = (resized.reshape(new_h, new_w),)
        else:
            planes = self._planes
            cv2.split(resized, planes)
        if order == 'mono':
            sources = (0, 0, 0)
        elif order == self.color_order:
            sources = (0, 1, 2)
        else:
            sources = (2, 1, 0)
        if out is None:
            tensor = self._tensors.acquire()
            if self._tensor_geometry.get(id(tensor)) != self._box:
                self._write_padding(tensor)  # new geometry for this buffer: pad it once
                self._tensor_geometry[id(tensor)] = self._box
        else:
            tensor = out
            self._write_padding(tensor)  # a loaned sample holds an earlier frame's bytes
        region = tensor[0, :, top:top + new_h, left:left + new_w]
        for channel, source in enumerate(sources):
            np.multiply(planes[source], self._SCALE, out=region[channel], casting='unsafe')
        return frozen_view(tensor), self._letterbox

    def _write_padding(self, tensor: np.ndarray) -> None:
        """Write only the pad strips around the image region (not the whole tensor)."""
        left, top, new_w, new_h = self._box
        planes = tensor[0]
        planes[:, :top, :] = self._pad
        planes[:, top + new_h:, :] = self._pad
        planes[:, top:top + new_h, :left] = self._pad
        planes[:, top:top + new_h, left + new_w:] = self._pad

    @property
    def tensor_allocations(self) -> int:
        """Tensors allocated so far (flat in steady state)."""
        return self._tensors.allocations

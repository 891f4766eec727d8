"""
Raw image buffers: validation, read-only views and pools of reused buffers.

Why plain: this runs on every frame and must refuse bad input with a precise reason (a
robot's camera driver can send anything); it needs no ROS, so it is tested directly.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

#: 8-bit encodings used as they are: name -> (channels, order of colour channels); every
#: encoding accepted is in :data:`edge_infer_ros.core.image_encodings.ENCODINGS`.
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


def read_only(array: np.ndarray) -> np.ndarray:
    """
    Mark an array read-only so no downstream stage can change a shared frame.

    ``setflags`` rather than ``flags.writeable``: it builds no flags object, which counts on
    the hot path (several arrays a frame, each after the camera's idle gap).
    """
    array.setflags(write=False)
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
    view: np.ndarray = buffer.view()
    view.setflags(write=False)  # cheaper than flags.writeable (see read_only)
    return view

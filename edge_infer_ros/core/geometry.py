"""
Where an image sits inside the model input (the letterbox), and the way back.

Why its own module: preprocessing produces the letterbox, the detections carry it through
every message, and NMS maps boxes back with it; all three stages share this one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """
    How an image was fitted into the model input: ``model = original * scale + pad``.

    Preprocessing produces it and the detections carry it, so boxes can be mapped back to
    the original image exactly with :func:`unletterbox`.
    """

    scale: float
    pad_x: float
    pad_y: float

    @classmethod
    def fit(cls, image_w: int, image_h: int, input_w: int, input_h: int) -> Letterbox:
        """
        Letterbox that fits an image into the model input, keeping the aspect ratio.

        The resized image is ``round(image * scale)`` pixels and sits at the integer offset
        ``(input - resized) // 2``, so the image is centred and never resampled off-grid.
        """
        if min(image_w, image_h, input_w, input_h) <= 0:
            raise ValueError('letterbox sizes must be positive, got image '
                             f'{image_w}x{image_h}, input {input_w}x{input_h}')
        scale = min(input_w / image_w, input_h / image_h)
        new_w = min(input_w, round(image_w * scale))
        new_h = min(input_h, round(image_h * scale))
        return cls(scale, float((input_w - new_w) // 2), float((input_h - new_h) // 2))


def unletterbox(boxes: np.ndarray, lb: Letterbox, image_w: float, image_h: float,
                out: Optional[np.ndarray] = None) -> np.ndarray:
    """
    Map (K, 4) xyxy boxes from model-input pixels back to the original image.

    ``original = (model - pad) / scale``, clipped to [0, image_w] x [0, image_h]. ``lb`` may
    be any object with scale, pad_x and pad_y (e.g. :class:`edge_infer_ros.core.image.Letterbox`).
    Returns a new float32 array, or writes into ``out`` (which may be ``boxes`` itself).
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'boxes must be (K, 4), got {list(boxes.shape)}')
    if not (lb.scale > 0 and np.isfinite([lb.scale, lb.pad_x, lb.pad_y]).all()):
        raise ValueError(f'letterbox scale must be positive and scale/pads finite, got '
                         f'{lb.scale}, ({lb.pad_x}, {lb.pad_y})')
    if out is None:
        out = np.empty(boxes.shape, np.float32)
    elif out.shape != boxes.shape:
        raise ValueError(f'out has shape {list(out.shape)}, boxes {list(boxes.shape)}')
    np.subtract(boxes, np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y], out.dtype), out=out)
    np.divide(out, out.dtype.type(lb.scale), out=out)
    np.clip(out[:, 0::2], 0, image_w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, image_h, out=out[:, 1::2])
    return out


def letterbox_geometry(width: int, height: int, in_w: int,
                       in_h: int) -> tuple[int, int, int, int, Letterbox]:
    """Return the resized size and top-left offset of an image centred in the model input."""
    letterbox = Letterbox.fit(width, height, in_w, in_h)
    new_w = max(1, min(in_w, round(width * letterbox.scale)))
    new_h = max(1, min(in_h, round(height * letterbox.scale)))
    return new_w, new_h, int(letterbox.pad_x), int(letterbox.pad_y), letterbox

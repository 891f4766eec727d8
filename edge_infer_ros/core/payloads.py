"""
What travels in an :class:`~edge_infer_ros.core.frame.Envelope` between the stages.

Arrays are read-only and shared by reference inside one process. ``image`` fields keep a
reference to the original frame so that a debug view can draw on it later without a copy;
they are None when the frame came through DDS in a form that no longer holds the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edge_infer_ros.core.geometry import Letterbox
from edge_infer_ros.core.records import fast_init
import numpy as np


@fast_init
@dataclass(frozen=True, slots=True)
class ImagePayload:
    """A camera frame: a read-only view in its ROS encoding (see core.image_encodings)."""

    image: np.ndarray
    encoding: str
    #: a JPEG decoded at 1/scale_down of the (width, height) it was sent at (full_size)
    scale_down: int = 1
    full_size: Optional[tuple[int, int]] = None


@fast_init
@dataclass(frozen=True, slots=True)
class TensorPayload:
    """A preprocessed model input and how to map its pixels back to the image."""

    tensor: np.ndarray
    letterbox: Letterbox
    image_width: int
    image_height: int
    image: Optional[np.ndarray] = None
    #: ROS encoding of ``image`` (the raw frame as it came: a debug view converts it)
    image_encoding: str = 'bgr8'


@fast_init
@dataclass(frozen=True, slots=True)
class CandidatePayload:
    """Decoded detector output before NMS, in model input pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]
    letterbox: Letterbox
    image_width: int
    image_height: int
    backend: str
    image: Optional[np.ndarray] = None
    image_encoding: str = 'bgr8'
    #: The maker of the arrays checked them against the gate's rules for candidates (see
    #: :func:`~edge_infer_ros.core.validate.check_envelope`), ordered them best score first
    #: and made them read-only: the in-process gate and NMS skip what that proved. Only the
    #: detector sets it; a message or a shared-memory sample never carries it.
    rows_checked: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class DetectionPayload:
    """Final detections of one frame, in original image pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]
    image_width: int
    image_height: int
    image: Optional[np.ndarray] = None
    #: False when class_names holds only the classes present (a DetectionArray from DDS)
    class_names_complete: bool = True
    image_encoding: str = 'bgr8'
    #: The maker of the arrays checked them against the gate's rules for detections and made
    #: them read-only (NMS, from candidates whose rows were checked): the in-process gate
    #: skips the rows.
    rows_checked: bool = False

    def __len__(self) -> int:
        return len(self.scores)


@fast_init
@dataclass(frozen=True, slots=True)
class Command:
    """The control command derived from one frame's detections."""

    linear_x: float
    angular_z: float
    stop: bool
    reason: str
    target_index: int = -1
    #: detections the policy refused to act on (not finite, inverted, outside the image...)
    ignored: int = 0

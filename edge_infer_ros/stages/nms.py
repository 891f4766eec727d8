"""
Greedy non-maximum suppression, class-aware in one pass: OpenCV's loop where it is exact, numpy.

The candidates are sorted here once (best score first, ties in input order), and
:func:`batched_nms` handles all classes together by shifting each class's boxes to its own
region of the plane, so boxes of different classes never overlap. A box is suppressed when its
IoU with a kept box is strictly above the threshold.

The greedy loop itself is OpenCV's ``cv2.dnn.NMSBoxes`` (compiled) when it gives the numpy
path's answer: it gets the already sorted, already shifted boxes (so its own sort, score
threshold and class handling never decide anything) and is skipped for boxes of zero or
negative width or height (OpenCV calls two empty boxes identical, the numpy path disjoint).
Both compute IoU in float64; OpenCV compares it with the threshold after rounding it to
float32, so a pair whose IoU lies within float32 rounding (~3e-8) of the threshold may be
judged differently. Without OpenCV's dnn module (or with ``engine='numpy'``) the numpy loop
runs: one IoU matrix for up to :data:`MATRIX_MAX` candidates, else one row per greedy step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from edge_infer_ros.core.geometry import unletterbox
from edge_infer_ros.core.image import read_only
from edge_infer_ros.core.payloads import CandidatePayload, DetectionPayload
from edge_infer_ros.core.validate import rows_trusted
import numpy as np

try:
    import cv2
    _OPENCV_NMS: Optional[Callable[..., Any]] = cv2.dnn.NMSBoxes
except (ImportError, AttributeError):  # no OpenCV, or one built without dnn
    _OPENCV_NMS = None

#: Which greedy loop to run: auto (OpenCV's where it is exact, else numpy's) or numpy.
ENGINES = ('auto', 'numpy')


def _prepare(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if boxes.size == 0 and scores.size == 0:
        return boxes.reshape(0, 4), scores.reshape(0)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'boxes must be (K, 4) xyxy, got shape {list(boxes.shape)}')
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f'scores must be ({boxes.shape[0]},), got {list(scores.shape)}')
    return boxes, scores


def _sorted_valid(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Return indices of candidates with finite score and box, best score first (stable)."""
    valid = np.isfinite(scores) & np.isfinite(boxes).all(axis=1)
    candidates = np.flatnonzero(valid)
    return candidates[np.argsort(-scores[candidates], kind='stable')]


#: Up to this many candidates the IoU matrix is computed at once (a few MB at most); above
#: it, each greedy step computes IoU against the remaining candidates only.
MATRIX_MAX = 512


def _greedy(boxes: np.ndarray, order: np.ndarray, iou_threshold: float,
            max_detections: int, engine: str = 'auto') -> np.ndarray:
    """
    Run greedy suppression over ``order`` (best first); return the kept indices.

    Small candidate sets (the usual case) build the whole IoU matrix with a handful of numpy
    calls and then only read it per step: measured ~5x faster than one IoU row per step for
    30-300 candidates, where per-call numpy overhead dominates.
    """
    if engine not in ENGINES:
        raise ValueError(f'engine must be one of {ENGINES}, got {engine!r}')
    if engine != 'numpy' and _OPENCV_NMS is not None and order.size > 1:
        kept = _greedy_opencv(boxes, order, iou_threshold, max_detections)
        if kept is not None:
            return kept
    if order.size <= MATRIX_MAX:
        return _greedy_matrix(boxes, order, iou_threshold, max_detections)
    return _greedy_steps(boxes, order, iou_threshold, max_detections)


def _greedy_matrix(boxes: np.ndarray, order: np.ndarray, iou_threshold: float,
                   max_detections: int) -> np.ndarray:
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    inter = np.minimum.outer(x2, x2)
    inter -= np.maximum.outer(x1, x1)
    np.maximum(inter, 0.0, out=inter)
    height = np.minimum.outer(y2, y2)
    height -= np.maximum.outer(y1, y1)
    np.maximum(height, 0.0, out=height)
    inter *= height
    union = np.add.outer(areas, areas)
    union -= inter
    # Where union is 0 both boxes have zero area, inter is 0 and stays 0: IoU 0.
    iou = np.divide(inter, union, out=inter, where=union > 0.0)
    over = iou > iou_threshold
    suppressed = np.zeros(order.size, bool)
    keep = []
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= max_detections:
            break
        suppressed |= over[i]
    return order[np.asarray(keep, dtype=np.int64)]


def _greedy_opencv(boxes: np.ndarray, order: np.ndarray, iou_threshold: float,
                   max_detections: int) -> Optional[np.ndarray]:
    """Run OpenCV's greedy loop over ``order``; None where it would not match numpy's."""
    opencv_nms = _OPENCV_NMS
    if opencv_nms is None:
        return None
    b = boxes[order]
    xywh = np.empty_like(b)
    xywh[:, :2] = b[:, :2]
    np.subtract(b[:, 2:], b[:, :2], out=xywh[:, 2:])
    if not (xywh[:, 2:] > 0.0).all():
        return None  # empty boxes: OpenCV's IoU of two of them is 1, ours 0
    # Scores that only restate the order: OpenCV's stable sort keeps it, its threshold (> 0)
    # passes every candidate.
    ranks = np.arange(order.size, 0, -1, dtype=np.float32)
    kept = opencv_nms(xywh, ranks, 0.0, float(iou_threshold))
    kept = np.asarray(kept, dtype=np.int64).reshape(-1)[:max_detections]
    return order[kept]


def _greedy_steps(boxes: np.ndarray, order: np.ndarray, iou_threshold: float,
                  max_detections: int) -> np.ndarray:
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    keep: list[int] = []
    while order.size and len(keep) < max_detections:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        if not rest.size:
            break
        w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])
        h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])
        inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=inter, where=union > 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        max_detections: int, engine: str = 'auto') -> np.ndarray:
    """
    Greedy NMS over (K, 4) xyxy boxes: indices of the kept boxes, best score first.

    A box is suppressed when its IoU with a higher-scored kept box is > ``iou_threshold``.
    Candidates with a NaN/inf score or coordinate are dropped; zero-area boxes overlap nothing
    and are kept. At most ``max_detections`` indices are returned. ``engine``: see ENGINES.
    """
    boxes, scores = _prepare(boxes, scores)
    if max_detections <= 0 or scores.size == 0:
        return np.empty(0, np.int64)
    return _greedy(boxes, _sorted_valid(boxes, scores), iou_threshold, max_detections, engine)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                iou_threshold: float, max_detections: int,
                class_agnostic: bool = False, engine: str = 'auto',
                presorted: bool = False) -> np.ndarray:
    """
    Class-aware greedy NMS in one pass: boxes only suppress boxes of the same class.

    Each class's boxes are offset by ``class_id * (coordinate span + 1)`` so different
    classes never overlap, then one :func:`nms` runs. With ``class_agnostic`` every box
    competes with every other. Returns indices into the inputs, best score first.
    ``presorted``: the caller knows every candidate is finite and they come best score first
    (ties in input order), as checked candidates do; they are then not sorted again.
    """
    boxes, scores = _prepare(boxes, scores)
    class_ids = np.asarray(class_ids)
    if class_ids.shape != scores.shape:
        raise ValueError(f'class_ids must be ({scores.size},), got {list(class_ids.shape)}')
    if max_detections <= 0 or scores.size == 0:
        return np.empty(0, np.int64)
    order = np.arange(scores.size) if presorted else _sorted_valid(boxes, scores)
    if class_agnostic or order.size <= 1:
        return _greedy(boxes, order, iou_threshold, max_detections, engine)
    valid_boxes = boxes if presorted else boxes[order]
    span = float(valid_boxes.max() - valid_boxes.min()) + 1.0
    shifted = boxes + (class_ids.astype(np.float64) * span)[:, None]
    return _greedy(shifted, order, iou_threshold, max_detections, engine)


@dataclass(frozen=True)
class NmsSettings:
    """What the nms stage keeps: the node's parameters, one object per change."""

    score_threshold: float = 0.25
    iou_threshold: float = 0.5
    max_detections: int = 100
    class_agnostic: bool = False
    #: class names to keep (empty: all)
    classes: tuple[str, ...] = ()
    #: most candidates considered per frame (the best scores)
    max_candidates: int = 1000


def detections_from_candidates(c: CandidatePayload,
                               settings: NmsSettings) -> tuple[DetectionPayload, bool]:
    """
    Filter, suppress and map one frame's candidates back to image pixels.

    Returns the detections and whether the candidates had to be cut to ``max_candidates``
    (the best scores kept), which the node counts.
    """
    keep_mask = c.scores >= settings.score_threshold
    truncated = c.scores.size > settings.max_candidates
    if truncated:  # an in-process producer set a larger cap: keep the best
        best = np.zeros(c.scores.size, bool)
        best[np.argpartition(-c.scores, settings.max_candidates - 1)[:settings.max_candidates]] \
            = True
        keep_mask &= best
    if settings.classes:
        wanted = [i for i, name in enumerate(c.class_names) if name in settings.classes]
        keep_mask &= np.isin(c.class_ids, wanted)
    boxes, scores, class_ids = c.boxes[keep_mask], c.scores[keep_mask], c.class_ids[keep_mask]
    # The gate's rule: the maker's word holds only while its arrays cannot have changed.
    checked = rows_trusted(c)
    keep = batched_nms(boxes, scores, class_ids, settings.iou_threshold,
                       settings.max_detections, class_agnostic=settings.class_agnostic,
                       presorted=checked)
    # Checked candidates map to detections within the gate's rules: finite boxes stay
    # ordered through the monotonic map, and the clip puts them inside the image.
    mapped = unletterbox(boxes[keep], c.letterbox, c.image_width, c.image_height)
    return DetectionPayload(read_only(mapped), read_only(scores[keep]),
                            read_only(class_ids[keep]), c.class_names, c.image_width,
                            c.image_height, c.image, image_encoding=c.image_encoding,
                            rows_checked=checked), truncated

"""
Decode raw YOLO detector outputs into candidate boxes (in model-input pixels).

Two output layouts exist in the wild:

* Ultralytics YOLOv8 / YOLO11 exports ``[1, 4+C, N]``: rows cx, cy, w, h, then one probability
  per class, with the N anchors along the last axis;
* YOLOv5 exports ``[1, N, 5+C]``: per anchor cx, cy, w, h, objectness, then class probabilities.

Decoding runs on every frame, so it is vectorised and reads the output in its native layout: for
v8 the class maximum is taken down the class axis of the ``[C, N]`` view, without transposing a
copy of the whole tensor, and only the few candidates above the score threshold are gathered.
Boxes stay in model-input pixels; :func:`edge_infer_ros.core.geometry.unletterbox` maps them
to the original image.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from edge_infer_ros.core.validate import MAX_BOX_COORD
import numpy as np

#: Output layouts the decoder understands.
LAYOUTS = ('yolov8', 'yolov5')

# Up to this many classes the class maxima are taken a column (YOLOv8: a row) at a time.
_COLUMN_LOOP_MAX_CLASSES = 24
_ROW_LOOP_MAX_CLASSES = 8

#: (cx, cy, w, h) @ _CORNERS = (x_min, y_min, x_max, y_max): each term times 1, 0 or +-0.5.
_CORNERS = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [-0.5, 0.0, 0.5, 0.0],
                     [0.0, -0.5, 0.0, 0.5]], np.float32)
#: The rows check keeps a pixel from the gate's coordinate limit: its bounds are sums taken in
#: double precision, the corners sums rounded to float32.
_ROWS_CHECK_LIMIT = MAX_BOX_COORD - 1.0

_EXPECTED = 'expected [1, 4+C, N] (YOLOv8/YOLO11) or [1, N, 5+C] (YOLOv5)'


def _shape_text(output_shape: Sequence[object]) -> str:
    return '[' + ', '.join(str(d) for d in output_shape) + ']'


def detect_layout(output_shape: Sequence[int], num_classes: Optional[int]) -> str:
    """
    Tell the YOLO output layout from the output shape (and the class count when known).

    ``[1, 4+C, N]`` is 'yolov8', ``[1, N, 5+C]`` is 'yolov5'. Without a class count the
    smaller of the two last dimensions is taken as the channel axis (a detector always has
    many more anchors than channels). Raises ValueError saying why when no layout fits.
    """
    shape = [int(d) for d in output_shape]
    known = f' with {num_classes} classes' if num_classes else ''
    if len(shape) != 3 or shape[0] != 1:
        raise ValueError(f'output shape {_shape_text(shape)} matches no known YOLO layout'
                         f'{known}: {_EXPECTED} (3-D with batch 1)')
    _, rows, cols = shape
    if num_classes:
        v8 = rows == 4 + num_classes
        v5 = cols == 5 + num_classes
        if v8 and v5:
            return 'yolov8' if rows < cols else 'yolov5'
        if v8:
            return 'yolov8'
        if v5:
            return 'yolov5'
        raise ValueError(f'output shape {_shape_text(shape)} matches no known YOLO layout'
                         f'{known}: {_EXPECTED}')
    if 4 < rows < cols:
        return 'yolov8'
    if 5 < cols < rows:
        return 'yolov5'
    raise ValueError(f'output shape {_shape_text(shape)} matches no known YOLO layout: '
                     f'{_EXPECTED}, with fewer channels than anchors')


def layout_num_classes(output_shape: Sequence[int], layout: str) -> int:
    """
    Return the class count implied by an output shape read as ``layout``.

    Used to check a layout given by metadata or a parameter against the real model; raises
    ValueError when the shape cannot be that layout.
    """
    shape = [int(d) for d in output_shape]
    if layout not in LAYOUTS:
        raise ValueError(f'unknown YOLO layout {layout!r}: expected one of {LAYOUTS}')
    if len(shape) != 3 or shape[0] != 1:
        raise ValueError(f'output shape {_shape_text(shape)} cannot be {layout}: {_EXPECTED}')
    classes = shape[1] - 4 if layout == 'yolov8' else shape[2] - 5
    if classes < 1:
        want = '[1, 4+C, N]' if layout == 'yolov8' else '[1, N, 5+C]'
        raise ValueError(f'output shape {_shape_text(shape)} cannot be {layout}: expected '
                         f'{want} with at least one class')
    return classes


def _corners_within(lows: list[float], highs: list[float], limit: float) -> bool:
    """
    Tell whether boxes with these per-row extremes (cx, cy, w, h) are upright and within limit.

    A box's corners are cx -+ w/2: no corner lies beyond the least centre less half the
    largest size, or the largest centre plus it. The check is sufficient, not exact: boxes it
    doubts are left to the gate.
    """
    low_x, low_y, low_w, low_h = lows
    high_x, high_y, high_w, high_h = highs
    return (low_w >= 0.0 and low_h >= 0.0 and
            -limit <= low_x - 0.5 * high_w and high_x + 0.5 * high_w <= limit and
            -limit <= low_y - 0.5 * high_h and high_y + 0.5 * high_h <= limit)


class YoloDecoder:
    """
    Turn one raw YOLO output into score-filtered candidate boxes (the detector hot path).

    Built once per model: it keeps the per-anchor score and mask scratch buffers between
    frames, so a decode allocates only the small candidate arrays. Non-finite values (an
    overflowing float16 model, a broken engine) never reach the caller: non-finite scores
    count as 0, candidates with non-finite boxes are dropped, and :attr:`last_non_finite`
    tells how many anchors of the last frame held such values.
    """

    def __init__(self, layout: str, num_classes: int, max_candidates: int = 300) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f'unknown YOLO layout {layout!r}: expected one of {LAYOUTS}')
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        if max_candidates < 1:
            raise ValueError(f'max_candidates must be >= 1, got {max_candidates}')
        self.layout = layout
        self.num_classes = int(num_classes)
        self.max_candidates = int(max_candidates)
        self.channels = self.num_classes + (4 if layout == 'yolov8' else 5)
        #: anchors of the last decoded frame that held NaN or inf in a score or a kept box
        self.last_non_finite = 0
        #: the last frame's candidates pass the gate's rules for candidates (see decode)
        self.last_rows_ok = True
        self._scores = np.empty(0, np.float32)
        self._mask = np.empty(0, bool)

    def _scratch(self, anchors: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        if self._scores.shape[0] != anchors or self._scores.dtype != dtype:
            self._scores = np.empty(anchors, dtype)
            self._mask = np.empty(anchors, bool)
        return self._scores, self._mask

    def _view(self, output: np.ndarray) -> np.ndarray:
        out = output
        if out.ndim == 3:
            if out.shape[0] != 1:
                raise ValueError(f'expected a batch of 1, got output shape {list(out.shape)}')
            out = out[0]
        if out.ndim != 2:
            raise ValueError(f'expected a 3-D YOLO output, got shape {list(output.shape)}')
        axis = 0 if self.layout == 'yolov8' else 1
        if out.shape[axis] != self.channels:
            want = (f'[1, {self.channels}, N]' if axis == 0 else f'[1, N, {self.channels}]')
            raise ValueError(f'{self.layout} output with {self.num_classes} classes must be '
                             f'{want}, got {list(output.shape)}')
        return out

    def decode(self, output: np.ndarray,
               score_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Decode one output into (boxes, scores, class_ids) of the candidates above threshold.

        boxes are (K, 4) float32 x_min, y_min, x_max, y_max in model-input pixels, scores (K,)
        float32 and class_ids (K,) int32, sorted by score descending (ties in anchor order);
        at most ``max_candidates`` of the best are kept. The output array is only read.

        After the call :attr:`last_rows_ok` tells whether every candidate passes the gate's
        rules for candidates (:func:`edge_infer_ros.core.validate.check_boxes`). Finite values
        and class ids below ``num_classes`` hold by construction; a model can still give a
        negative width or height, a score above 1 or a huge coordinate, which three
        reductions over the K candidates find here, while the arrays are in cache, instead of
        a check of every row at the next stage's input.
        """
        out = self._view(np.asarray(output))
        v8 = self.layout == 'yolov8'
        anchors = out.shape[1] if v8 else out.shape[0]
        scores, mask = self._scratch(anchors, out.dtype)
        # Best class score per anchor, read in the native layout (no transposed copy).
        first = 4 if v8 else 5
        if 1 < self.num_classes <= (_ROW_LOOP_MAX_CLASSES if v8 else _COLUMN_LOOP_MAX_CLASSES):
            # A few maxima of two rows (YOLOv5: strided columns) beat one reduction: over a
            # short inner axis a reduction costs per row, and after the camera's idle gap the
            # first reduction of a frame is its slowest numpy call (docs/benchmarks.md).
            rows = out if v8 else out.T
            np.maximum(rows[first], rows[first + 1], out=scores)
            for row in range(first + 2, first + self.num_classes):
                np.maximum(scores, rows[row], out=scores)
        elif v8:
            np.max(out[4:], axis=0, out=scores)
        else:
            np.max(out[:, 5:], axis=1, out=scores)
        if not v8:
            # obj * max(cls) == max(obj * cls) because obj is a probability (>= 0).
            np.multiply(scores, out[:, 4], out=scores)
        # NaN and +inf propagate through max and multiply, so one check over N finds them.
        # Few numpy calls from here: after the camera's idle gap each one is slow, whatever
        # its size (count_nonzero is not a reduction: cheaper cold than all()).
        np.isfinite(scores, out=mask)
        bad = None
        if np.count_nonzero(mask) != anchors:
            bad = np.flatnonzero(~mask)
            scores[bad] = self._clean_scores(out, bad)
        np.greater_equal(scores, score_threshold, out=mask)
        idx = mask.nonzero()[0]
        self.last_non_finite = 0 if bad is None else int(bad.size)
        self.last_rows_ok = True
        if idx.size == 0:
            return np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty(0, np.int32)
        if idx.size > self.max_candidates:
            top = np.argpartition(scores[idx], idx.size - self.max_candidates)
            idx = np.sort(idx[top[idx.size - self.max_candidates:]])
        kept = scores[idx]
        order = np.argsort(-kept, kind='stable')
        idx, kept = idx[order], kept[order]
        # The candidates' rows, gathered once: (channels, K), a new array.
        picked = out[:, idx] if v8 else out[idx].T
        raw = picked[:4]
        if raw.dtype != np.float32:
            raw = raw.astype(np.float32)
        # Per row (cx, cy, w, h): the least and the largest value. NaN and inf show in them.
        lows, highs = raw.min(axis=1).tolist(), raw.max(axis=1).tolist()
        if not all(map(math.isfinite, lows + highs)):
            finite = np.isfinite(raw).all(axis=0)
            dropped = idx[~finite]
            self.last_non_finite += (dropped.size if bad is None else
                                     np.setdiff1d(dropped, bad, assume_unique=True).size)
            idx, kept = idx[finite], kept[finite]
            raw, picked = raw[:, finite], picked[:, finite]
            if idx.size == 0:
                return (np.empty((0, 4), np.float32), np.empty(0, np.float32),
                        np.empty(0, np.int32))
            lows, highs = raw.min(axis=1).tolist(), raw.max(axis=1).tolist()
        # x_min, y_min, x_max, y_max = cx - w/2, cy - h/2, cx + w/2, cy + h/2 in one call:
        # each is one exact halving and one rounded sum, the values four ufuncs would give.
        boxes = np.matmul(raw.T, _CORNERS)
        self.last_rows_ok = bool(0.0 <= kept[-1] and kept[0] <= 1.0) and \
            _corners_within(lows, highs, _ROWS_CHECK_LIMIT)
        cls = picked[first:]  # (C, K)
        if bad is not None and not np.isfinite(cls).all():
            cls = np.where(np.isfinite(cls), cls, 0)
        class_ids = np.argmax(cls, axis=0).astype(np.int32)
        return boxes, (kept if kept.dtype == np.float32 else kept.astype(np.float32)), class_ids

    def _clean_scores(self, out: np.ndarray, bad: np.ndarray) -> np.ndarray:
        """Recompute the scores of the anchors in ``bad`` with non-finite values taken as 0."""
        if self.layout == 'yolov8':
            cls = out[4:, bad]
            scores: np.ndarray = np.where(np.isfinite(cls), cls, 0).max(axis=0)
            return scores
        obj = out[bad, 4]
        cls = out[bad, 5:]
        obj = np.where(np.isfinite(obj), obj, 0)
        scores = obj * np.where(np.isfinite(cls), cls, 0).max(axis=1)
        return scores

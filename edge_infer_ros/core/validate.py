"""
Checks of untrusted frame data, shared by every trust boundary of the pipeline.

Why one module: any participant of the ROS domain can publish on a stage's input, and a bug
upstream looks the same, so the conversion of every message (``ros/convert.py``), NMS and the
action policy apply the same rules: finite numbers, ordered boxes inside the image, scores in
[0, 1], class ids in range, sizes and counts capped, stamps neither zero nor from the future.
A refusal raises :class:`InputRefused` whose ``reason`` is one of :data:`REASONS`, a short
fixed key the nodes count per reason (the set is fixed here, so the counters stay bounded
whatever arrives); its message says what was wrong.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Optional, Sequence

from edge_infer_ros.core.payloads import (CandidatePayload, DetectionPayload, ImagePayload,
                                          TensorPayload)
import numpy as np

#: Every reason a refusal may name (the keys of the nodes' refusal counters).
REASONS = ('zero_stamp', 'negative_stamp', 'future_stamp', 'bad_letterbox', 'bad_image_size',
           'non_finite', 'inverted_box', 'box_outside_image', 'score_out_of_range',
           'class_id_out_of_range', 'too_many', 'bad_name', 'bad_trace', 'malformed',
           'bad_stamp', 'unsupported_encoding', 'bad_image_data', 'bad_compressed')

#: A stamp up to this far ahead of the receiver's clock is accepted (hosts' clock skew).
FUTURE_TOLERANCE_NS = 1_000_000_000
#: Largest image side accepted, pixels (larger than any camera sensor's).
MAX_IMAGE_SIDE = 32768
#: Largest letterbox pad, model pixels, and largest scale (model pixels per image pixel).
MAX_PAD = 65536.0
MAX_SCALE = 1024.0
#: Most class ids a message may refer to (ids are in [0, MAX_CLASSES)).
MAX_CLASSES = 4096
#: Most detections one DetectionArray from outside may hold.
MAX_DETECTIONS = 10000
#: Most stage timings one trace may hold, and the longest stage/node/camera name.
MAX_STAGES = 32
MAX_NAME_LENGTH = 256
#: Longest hardware_id of a diagnostics status (it is copied into every status).
MAX_HARDWARE_ID = 128
#: Largest box coordinate accepted anywhere, pixels: a finite +-1e30 is absurd and used to be
#: clipped to the whole image (a box over everything) instead of refused.
MAX_BOX_COORD = 1_000_000.0
#: Longest class name accepted (names are copied into every Detection).
MAX_CLASS_NAME = 128
#: How far outside the image a final box corner may be, pixels (rounding of float32).
BOX_TOLERANCE = 1.0

#: Stage names: ROS-parameter-like identifiers (``budget_ms.<stage>`` must be valid).
STAGE_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]{0,63}$')
#: Camera names: frame_id-like, printable, no spaces.
CAMERA_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_./:-]{0,63}$')
#: Up to this many boxes are checked row by row in plain Python: a dozen numpy calls cost more
#: than the rows of a frame's candidates, most of all after an idle period, when each numpy
#: call is slow (docs/benchmarks.md has the crossover).
SCALAR_BOX_ROWS = 128


class InputRefused(ValueError):
    """A message or payload refused at a trust boundary; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason if reason in REASONS else 'bad_trace'


def check_stamp(stamp_ns: int, now_ns: int, what: str = 'header stamp',
                tolerance_ns: int = FUTURE_TOLERANCE_NS) -> None:
    """Refuse a zero, negative or future stamp (the capture time must be known and past)."""
    if stamp_ns == 0:
        raise InputRefused('zero_stamp', f'zero {what}: the capture time is unknown')
    if stamp_ns < 0:
        raise InputRefused('negative_stamp', f'{what} is negative ({stamp_ns} ns)')
    if stamp_ns > now_ns + tolerance_ns:
        raise InputRefused('future_stamp', f'{what} is {(stamp_ns - now_ns) / 1e9:.3f} s in '
                           f'the future (tolerance {tolerance_ns / 1e9:g} s): check the '
                           "publisher's clock")


def check_time_fields(sec: int, nanosec: int, what: str = 'header stamp') -> None:
    """
    Refuse a builtin_interfaces/Time whose nanosec is not below one second.

    Such a stamp used to be renormalised into another one, so a client matching outputs by
    stamp never found them: it is refused as sent instead.
    """
    if not 0 <= nanosec < 1_000_000_000:
        raise InputRefused('bad_stamp', f'{what} has nanosec {nanosec}: builtin_interfaces/'
                           f'Time needs 0 <= nanosec < 1e9 (sec {sec})')


def check_image_size(width: int, height: int) -> None:
    """Refuse an empty or absurd image size (boxes are mapped into it)."""
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        raise InputRefused('bad_image_size', f'image size {width}x{height} is outside '
                           f'1..{MAX_IMAGE_SIDE} pixels')


def check_letterbox(scale: float, pad_x: float, pad_y: float) -> None:
    """Refuse a letterbox that cannot map boxes back: NaN/inf, scale <= 0, absurd pads."""
    if not (math.isfinite(scale) and math.isfinite(pad_x) and math.isfinite(pad_y)):
        raise InputRefused('bad_letterbox', f'letterbox scale {scale}, pad ({pad_x}, {pad_y}) '
                           'is not finite')
    if not 0.0 < scale <= MAX_SCALE:
        raise InputRefused('bad_letterbox', f'letterbox scale {scale} is outside '
                           f'(0, {MAX_SCALE:g}]')
    if abs(pad_x) > MAX_PAD or abs(pad_y) > MAX_PAD:
        raise InputRefused('bad_letterbox', f'letterbox pad ({pad_x}, {pad_y}) is larger '
                           f'than {MAX_PAD:g} pixels')


def check_count(count: int, limit: int, what: str) -> None:
    """Refuse more than ``limit`` items before any per-item work is done."""
    if count > limit:
        raise InputRefused('too_many', f'{count} {what} is more than the limit of {limit}')


@functools.lru_cache(maxsize=256)
def _matches(name: str, pattern: re.Pattern[str]) -> bool:
    """Match a name once: a frame's names repeat (a memo of 256 names of bounded length)."""
    return pattern.match(name) is not None


def check_name(name: str, what: str, pattern: re.Pattern[str] = CAMERA_NAME_RE) -> None:
    """Refuse a name that is too long or has characters outside ``pattern``."""
    if len(name) > MAX_NAME_LENGTH or not _matches(name, pattern):
        shown = name[:40] + ('...' if len(name) > 40 else '')
        raise InputRefused('bad_name', f'{what} {shown!r} ({len(name)} characters) is not a '
                           f'valid name ({pattern.pattern})')


def check_frame_names(camera: str, frame_id: str) -> None:
    """
    Refuse a frame whose camera name the budget monitor could not follow.

    One rule for every node and the monitor (:data:`CAMERA_NAME_RE`), applied at ingest: a
    camera named with a space or over 64 characters used to be processed and commanded while
    the monitor refused each of its traces. An empty name is left to the stage (it names
    the camera itself).
    """
    if camera:
        check_name(camera, 'camera name (frame_id)', CAMERA_NAME_RE)
    if len(frame_id) > MAX_NAME_LENGTH:
        raise InputRefused('bad_name', f'frame_id of {len(frame_id)} characters is longer '
                           f'than {MAX_NAME_LENGTH}')


def check_class_names(names: Sequence[str], what: str = 'class name') -> None:
    """Refuse a class name longer than :data:`MAX_CLASS_NAME` (not truncate it)."""
    for index, name in enumerate(names):
        if len(name) > MAX_CLASS_NAME:
            raise InputRefused('bad_name', f'{what} {index} has {len(name)} characters, more '
                               f'than {MAX_CLASS_NAME}: {name[:40]!r}...')


def check_boxes(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                num_classes: int, what: str, image_size: Optional[tuple[int, int]] = None
                ) -> None:
    """
    Refuse non-finite or inverted boxes, scores outside [0, 1] and class ids out of range.

    ``boxes`` is (K, 4) xyxy. With ``image_size`` (width, height) the boxes must also lie in
    the image, within :data:`BOX_TOLERANCE`. Up to :data:`SCALAR_BOX_ROWS` rows are judged row
    by row; more, or a refusal to explain, take a few numpy passes.
    """
    if boxes.size == 0 or (len(boxes) <= SCALAR_BOX_ROWS and
                           _rows_ok(boxes, scores, class_ids, num_classes, image_size)):
        return
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
    if not finite.all():
        raise InputRefused('non_finite', f'{int(finite.size - finite.sum())} of {finite.size} '
                           f'{what} hold NaN/inf values')
    absurd = (np.abs(boxes) > MAX_BOX_COORD).any(axis=1)
    if absurd.any():
        index = int(np.flatnonzero(absurd)[0])
        raise InputRefused('box_outside_image', f'{what} {index} {boxes[index].tolist()} has a '
                           f'coordinate beyond +-{MAX_BOX_COORD:g} pixels')
    if ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
        index = int(np.flatnonzero((boxes[:, 2] < boxes[:, 0]) |
                                   (boxes[:, 3] < boxes[:, 1]))[0])
        raise InputRefused('inverted_box', f'{what} {index} has x_max < x_min or y_max < '
                           f'y_min: {boxes[index].tolist()}')
    if image_size is not None:
        width, height = image_size
        tol = BOX_TOLERANCE
        outside = ((boxes[:, 0] < -tol) | (boxes[:, 1] < -tol) | (boxes[:, 2] > width + tol) |
                   (boxes[:, 3] > height + tol))
        if outside.any():
            index = int(np.flatnonzero(outside)[0])
            raise InputRefused('box_outside_image', f'{what} {index} {boxes[index].tolist()} '
                               f'lies outside the {width}x{height} image')
    if ((scores < 0.0) | (scores > 1.0)).any():
        raise InputRefused('score_out_of_range', f'{what} have scores outside [0, 1] '
                           f'(min {float(scores.min())}, max {float(scores.max())})')
    if ((class_ids < 0) | (class_ids >= num_classes)).any():
        raise InputRefused('class_id_out_of_range', f'{what} have class ids outside '
                           f'[0, {num_classes}) (min {int(class_ids.min())}, max '
                           f'{int(class_ids.max())})')


def _rows_ok(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, num_classes: int,
             image_size: Optional[tuple[int, int]]) -> bool:
    """Tell whether every row passes :func:`check_boxes`, in plain Python (else numpy says why)."""
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (len(boxes),) or \
            class_ids.shape != scores.shape:
        return False
    return not broken_rows(boxes.tolist(), scores.tolist(), class_ids.tolist(), num_classes,
                           image_size)


def broken_rows(boxes: Sequence[Sequence[float]], scores: Sequence[float],
                class_ids: Sequence[int], num_classes: int,
                image_size: Optional[tuple[int, int]] = None) -> list[int]:
    """
    Return the indices of the rows (plain numbers) that break the rules of :func:`check_boxes`.

    The gate refuses a frame with any; the action policy ignores and counts them instead (it
    defends itself against an in-process payload whose rows nobody checked). A NaN fails every
    comparison and an infinity the bounds, so the chains test finiteness too. One loop, no
    call per row: both run on every frame.
    """
    if image_size is None:
        low, high_x, high_y = -MAX_BOX_COORD, MAX_BOX_COORD, MAX_BOX_COORD
    else:  # the image's bounds lie inside +-MAX_BOX_COORD
        low = -BOX_TOLERANCE
        high_x, high_y = image_size[0] + BOX_TOLERANCE, image_size[1] + BOX_TOLERANCE
    return [index for index, ((x_min, y_min, x_max, y_max), score, class_id)
            in enumerate(zip(boxes, scores, class_ids))
            if not (low <= x_min <= x_max <= high_x and low <= y_min <= y_max <= high_y and
                    0.0 <= score <= 1.0 and 0 <= class_id < num_classes)]


def rows_trusted(payload: Any) -> bool:
    """
    Tell whether candidates' or detections' rows were checked by their maker, unchanged since.

    ``rows_checked`` with read-only arrays: the detector's decoder and NMS after it, in this
    process. Messages and shared-memory samples never carry the mark.
    """
    return bool(payload.rows_checked) and not (payload.boxes.flags.writeable or
                                               payload.scores.flags.writeable or
                                               payload.class_ids.flags.writeable)


def check_trace(stamp_ns: int, stages: Sequence[Any], now_ns: int,
                tolerance_ns: int = FUTURE_TOLERANCE_NS) -> None:
    """
    Refuse a trace whose times cannot be a frame's: zero, out of order, before the capture.

    Every timing must be received <= start <= end, not earlier than the capture stamp or the
    previous stage's start by more than ``tolerance_ns`` (clock skew between hosts), and not
    in the future; stage names must be identifiers and node names bounded.
    """
    check_count(len(stages), MAX_STAGES, 'stage timings')
    for timing in stages:
        check_name(timing.stage, 'stage name', STAGE_NAME_RE)
        if len(timing.node) > MAX_NAME_LENGTH:
            raise InputRefused('bad_name', f'node name of {len(timing.node)} characters is '
                               f'longer than {MAX_NAME_LENGTH}')
        times = (timing.received_ns, timing.start_ns, timing.end_ns)
        if min(times) <= 0:
            raise InputRefused('bad_trace', f'stage {timing.stage} has a zero or negative '
                               f'time {list(times)}')
        if not timing.received_ns <= timing.start_ns <= timing.end_ns:
            raise InputRefused('bad_trace', f'stage {timing.stage} times are out of order: '
                               f'received {timing.received_ns}, start {timing.start_ns}, end '
                               f'{timing.end_ns}')
        if timing.received_ns < stamp_ns - tolerance_ns:
            raise InputRefused('bad_trace', f'stage {timing.stage} received the frame '
                               f'{(stamp_ns - timing.received_ns) / 1e9:.3f} s before its '
                               'capture stamp')
        if timing.end_ns > now_ns + tolerance_ns:
            raise InputRefused('future_stamp', f'stage {timing.stage} ended '
                               f'{(timing.end_ns - now_ns) / 1e9:.3f} s in the future')


def check_envelope(envelope: Any, now_ns: int, max_count: int = MAX_DETECTIONS,
                   scan_tensor: bool = True) -> None:
    """
    Refuse an envelope that its DDS message would have been refused for.

    The gate of the inputs that skip ``ros/convert.py``: shared-memory samples (any local
    process can open the service) and in-process deliveries (a bug upstream). Same rules and
    reasons as the conversion of each message, so a transport changes the cost, not what is
    let through. Image encodings are the image module's business and are not checked here.
    ``scan_tensor`` False skips the per-element NaN/inf scan of a tensor (a pass over the
    whole tensor): for tensors this process's preprocessor made from pixels.

    A frame that passes is judged in one pass (:func:`_envelope_ok`): the gate runs on every
    hop of every frame, and after an idle period each call it makes is slow. The checks one
    by one run only for a frame that pass did not accept, to say why it is refused. Rows
    whose maker checked them (``rows_checked``, read-only arrays: the detector's decoder, NMS
    after it) are not judged again; the rest of the frame is.
    """
    if _envelope_ok(envelope, now_ns, max_count, scan_tensor):
        return
    stamp = envelope.stamp_ns
    check_stamp(stamp, now_ns)
    check_frame_names(envelope.camera, envelope.frame_id)
    check_trace(stamp, envelope.trace, now_ns)
    payload = envelope.payload
    if isinstance(payload, ImagePayload):
        shape = payload.image.shape
        check_image_size(int(shape[1]) if len(shape) > 1 else 0, int(shape[0]) if shape else 0)
    elif isinstance(payload, TensorPayload):
        tensor = payload.tensor
        if scan_tensor and tensor.dtype.kind == 'f' and not np.isfinite(tensor).all():
            bad = int(tensor.size - np.count_nonzero(np.isfinite(tensor)))
            raise InputRefused('non_finite', f'tensor holds {bad} NaN/inf values: refused '
                               'before inference')
        box = payload.letterbox
        check_letterbox(box.scale, box.pad_x, box.pad_y)
        check_image_size(payload.image_width, payload.image_height)
    elif isinstance(payload, (CandidatePayload, DetectionPayload)):
        final = isinstance(payload, DetectionPayload)
        scores, boxes, ids = payload.scores, payload.boxes, payload.class_ids
        check_count(int(scores.size), MAX_DETECTIONS if final else max_count,
                    'detections' if final else 'candidates')
        check_count(len(payload.class_names), MAX_CLASSES, 'class names')
        check_class_names(payload.class_names)
        if boxes.shape != (scores.size, 4) or ids.shape != scores.shape:
            raise InputRefused('malformed', f'arrays disagree: boxes {boxes.shape}, scores '
                               f'{scores.shape}, class ids {ids.shape}')
        if isinstance(payload, CandidatePayload):
            box = payload.letterbox
            check_letterbox(box.scale, box.pad_x, box.pad_y)
        check_image_size(payload.image_width, payload.image_height)
        classes = MAX_CLASSES if final else (len(payload.class_names) or MAX_CLASSES)
        check_boxes(boxes, scores, ids, classes, 'detections' if final else 'candidates',
                    (payload.image_width, payload.image_height) if final else None)


def _envelope_ok(envelope: Any, now_ns: int, max_count: int, scan_tensor: bool) -> bool:
    """
    Tell whether an envelope passes :func:`check_envelope`, in one function and no raise.

    The same rules, written as chained comparisons (a NaN fails each of them). False means
    only "judge it check by check": it is also the answer for anything unexpected.
    """
    try:
        stamp = envelope.stamp_ns
        latest = now_ns + FUTURE_TOLERANCE_NS
        camera = envelope.camera
        if not (0 < stamp <= latest and len(envelope.frame_id) <= MAX_NAME_LENGTH and
                (not camera or (len(camera) <= MAX_NAME_LENGTH and
                                _matches(camera, CAMERA_NAME_RE)))):
            return False
        trace = envelope.trace
        if len(trace) > MAX_STAGES:
            return False
        earliest = stamp - FUTURE_TOLERANCE_NS
        for timing in trace:
            received, stage = timing.received_ns, timing.stage
            if not (0 < received and earliest <= received <= timing.start_ns <= timing.end_ns
                    <= latest and len(timing.node) <= MAX_NAME_LENGTH and
                    len(stage) <= MAX_NAME_LENGTH and _matches(stage, STAGE_NAME_RE)):
                return False
        payload = envelope.payload
        if isinstance(payload, ImagePayload):
            shape = payload.image.shape
            return len(shape) > 1 and 1 <= shape[1] <= MAX_IMAGE_SIDE and \
                1 <= shape[0] <= MAX_IMAGE_SIDE
        final = isinstance(payload, DetectionPayload)
        if not (final or isinstance(payload, (TensorPayload, CandidatePayload))):
            return True
        if not (1 <= payload.image_width <= MAX_IMAGE_SIDE and
                1 <= payload.image_height <= MAX_IMAGE_SIDE):
            return False
        if not final:
            box = payload.letterbox
            if not (0.0 < box.scale <= MAX_SCALE and -MAX_PAD <= box.pad_x <= MAX_PAD and
                    -MAX_PAD <= box.pad_y <= MAX_PAD):
                return False
        if isinstance(payload, TensorPayload):
            tensor = payload.tensor
            return not (scan_tensor and tensor.dtype.kind == 'f' and
                        not np.isfinite(tensor).all())
        scores, boxes, ids, names = (payload.scores, payload.boxes, payload.class_ids,
                                     payload.class_names)
        count = scores.size
        if count > (MAX_DETECTIONS if final else max_count) or len(names) > MAX_CLASSES or \
                boxes.shape != (count, 4) or ids.shape != scores.shape:
            return False
        for name in names:
            if len(name) > MAX_CLASS_NAME:
                return False
        if rows_trusted(payload):
            return True
        return count == 0 or (count <= SCALAR_BOX_ROWS and _rows_ok(
            boxes, scores, ids, MAX_CLASSES if final else (len(names) or MAX_CLASSES),
            (payload.image_width, payload.image_height) if final else None))
    except Exception:  # noqa: B902 - whatever it is, the checks one by one say it
        return False

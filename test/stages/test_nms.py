"""Tests of greedy NMS: known cases, edge cases, and agreement with a plain Python reference."""

import dataclasses
from unittest import mock

from edge_infer_ros.core import validate
from edge_infer_ros.core.geometry import Letterbox
from edge_infer_ros.core.image import read_only
from edge_infer_ros.core.payloads import CandidatePayload
from edge_infer_ros.stages import nms as nms_module
from edge_infer_ros.stages.nms import batched_nms, detections_from_candidates, nms, NmsSettings
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes, scores, classes, iou_threshold, max_detections, agnostic) -> list:
    """Textbook greedy NMS, one box at a time, in plain Python floats."""
    valid = [i for i in range(len(scores))
             if np.isfinite(scores[i]) and all(np.isfinite(v) for v in boxes[i])]
    order = sorted(valid, key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if len(keep) >= max_detections:
            break
        box = [float(v) for v in boxes[i]]
        if all(not (agnostic or classes[i] == classes[k])
               or _iou(box, [float(v) for v in boxes[k]]) <= iou_threshold for k in keep):
            keep.append(i)
    return keep


def test_empty_and_single() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5, 10).tolist() == []
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5, 10).tolist() == []
    assert nms(np.array([[0, 0, 10, 10]]), np.array([0.3]), 0.5, 10).tolist() == [0]
    assert batched_nms(np.array([[0, 0, 10, 10]]), np.array([0.3]), np.array([2]),
                       0.5, 10).tolist() == [0]
    assert nms(np.array([[0, 0, 10, 10]]), np.array([0.3]), 0.5, 0).tolist() == []


BOXES = np.array([[0, 0, 10, 10],      # 0: class 0, best
                  [1, 1, 11, 11],      # 1: class 0, IoU 0.68 with 0 -> suppressed
                  [0, 0, 10, 10],      # 2: class 1, same place, other class
                  [50, 50, 60, 60],    # 3: class 0, far away
                  [2, 0, 12, 10]],     # 4: class 1, IoU 0.67 with 2 -> suppressed
                 np.float32)
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
CLASSES = np.array([0, 0, 1, 0, 1], np.int32)


def test_same_class_overlap_suppressed_other_class_kept() -> None:
    keep = batched_nms(BOXES, SCORES, CLASSES, 0.5, 100)
    assert keep.tolist() == [0, 2, 3]
    assert keep.dtype == np.int64


def test_agnostic_suppresses_across_classes() -> None:
    keep = batched_nms(BOXES, SCORES, CLASSES, 0.5, 100, class_agnostic=True)
    assert keep.tolist() == [0, 3]
    assert nms(BOXES, SCORES, 0.5, 100).tolist() == [0, 3]


def test_threshold_is_strict_and_max_detections_limits() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float64)  # IoU exactly 1/3
    scores = np.array([0.5, 0.9])
    assert nms(boxes, scores, 1 / 3, 10).tolist() == [1, 0]
    assert nms(boxes, scores, 0.3, 10).tolist() == [1]
    assert batched_nms(BOXES, SCORES, CLASSES, 0.5, 2).tolist() == [0, 2]


def test_result_is_sorted_by_score_not_by_index() -> None:
    boxes = np.array([[0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21]], np.float32)
    scores = np.array([0.2, 0.9, 0.5], np.float32)
    assert batched_nms(boxes, scores, np.array([2, 0, 1]), 0.5, 10).tolist() == [1, 2, 0]


def test_zero_area_and_nan_boxes() -> None:
    boxes = np.array([[5, 5, 5, 5],          # zero area: overlaps nothing, kept
                      [5, 5, 5, 5],          # identical zero-area box: IoU 0, kept
                      [0, 0, np.nan, 10],    # NaN coordinate: dropped
                      [0, 0, 10, 10],
                      [0, 0, 10, 10]],       # NaN score: dropped
                     np.float32)
    scores = np.array([0.9, 0.8, 0.99, 0.7, np.nan], np.float32)
    assert nms(boxes, scores, 0.5, 10).tolist() == [0, 1, 3]
    classes = np.array([0, 0, 0, 0, 0])
    assert batched_nms(boxes, scores, classes, 0.5, 10).tolist() == [0, 1, 3]
    all_nan = np.full((2, 4), np.nan)
    assert batched_nms(all_nan, np.ones(2), np.zeros(2, int), 0.5, 10).tolist() == []


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match='boxes'):
        nms(np.zeros((3, 5)), np.zeros(3), 0.5, 10)
    with pytest.raises(ValueError, match='scores'):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5, 10)
    with pytest.raises(ValueError, match='class_ids'):
        batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(2), 0.5, 10)


@st.composite
def detections(draw):
    """Boxes on a 1/8-pixel grid (IoU arithmetic is then exact in float64), some clustered."""
    count = draw(st.integers(0, 40))
    coord = st.integers(0, 8 * 64).map(lambda v: v / 8)
    size = st.integers(0, 8 * 32).map(lambda v: v / 8)
    boxes, scores, classes = [], [], []
    for _ in range(count):
        x, y, w, h = draw(coord), draw(coord), draw(size), draw(size)
        boxes.append([x, y, x + w, y + h])
        scores.append(draw(st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9])
                           | st.floats(0, 1, width=32)))
        classes.append(draw(st.integers(0, 3)))
    if count and draw(st.booleans()):
        boxes[0][draw(st.integers(0, 3))] = float('nan')
    return (np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
            np.array(classes, np.int32))


@settings(max_examples=150, deadline=None)
@given(data=detections(), iou=st.sampled_from([0.0, 0.3, 0.45, 0.5, 0.7, 1.0]),
       max_det=st.integers(1, 50), agnostic=st.booleans(), matrix=st.booleans())
def test_matches_reference(data, iou, max_det, agnostic, matrix) -> None:
    boxes, scores, classes = data
    want = reference_nms(boxes, scores, classes, iou, max_det, agnostic)
    # Both IoU strategies (whole matrix, one row per step) must agree with the reference.
    with mock.patch.object(nms_module, 'MATRIX_MAX', 10_000 if matrix else 0):
        got = batched_nms(boxes, scores, classes, iou, max_det, class_agnostic=agnostic)
        if agnostic:
            assert nms(boxes, scores, iou, max_det).tolist() == want
    assert got.tolist() == want


@settings(max_examples=100, deadline=None)
@given(data=detections(), iou=st.sampled_from([0.0, 0.5, 1.0]), max_det=st.integers(1, 50),
       agnostic=st.booleans())
def test_presorted_candidates_are_suppressed_as_when_sorted_here(data, iou, max_det,
                                                                 agnostic) -> None:
    boxes, scores, classes = data
    finite = np.isfinite(boxes).all(axis=1)
    boxes, scores, classes = boxes[finite], scores[finite], classes[finite]
    order = np.argsort(-scores, kind='stable')  # what the decoder hands on: best first
    boxes, scores, classes = boxes[order], scores[order], classes[order]
    want = reference_nms(boxes, scores, classes, iou, max_det, agnostic)
    assert batched_nms(boxes, scores, classes, iou, max_det, class_agnostic=agnostic,
                       presorted=True).tolist() == want


def test_large_candidate_set_matches_reference() -> None:
    rng = np.random.default_rng(7)
    count = nms_module.MATRIX_MAX + 88
    xy = rng.integers(0, 8 * 200, (count, 2)) / 8
    wh = rng.integers(8, 8 * 40, (count, 2)) / 8
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.random(count).astype(np.float32)
    classes = rng.integers(0, 4, count)
    want = reference_nms(boxes, scores, classes, 0.45, 300, False)
    assert batched_nms(boxes, scores, classes, 0.45, 300).tolist() == want


def _random_frame(rng: np.random.Generator, count: int, classes: int) -> tuple:
    """Candidates like a detector's: clustered float boxes, float32 scores with some ties."""
    centres = rng.uniform(0, 320, (max(1, count // 8), 2))
    xy = centres[rng.integers(0, len(centres), count)] + rng.normal(0, 6, (count, 2))
    wh = rng.uniform(0.5, 60, (count, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1).astype(np.float32)
    scores = rng.choice(np.round(rng.uniform(0.25, 1, count), 2), count).astype(np.float32)
    return boxes, scores, rng.integers(0, classes, count)


def test_opencv_and_numpy_loops_keep_the_same_boxes_on_many_random_frames() -> None:
    if nms_module._OPENCV_NMS is None:
        pytest.skip('this OpenCV has no cv2.dnn.NMSBoxes: only the numpy loop exists')
    rng = np.random.default_rng(18)
    calls = []
    real = nms_module._OPENCV_NMS

    def counting(*args):
        calls.append(1)
        return real(*args)

    compared = 0
    with mock.patch.object(nms_module, '_OPENCV_NMS', counting):
        for frame in range(600):
            boxes, scores, classes = _random_frame(rng, int(rng.integers(2, 400)), 4)
            iou = float(rng.choice([0.3, 0.45, 0.5, 0.65, 0.9]))
            max_det = int(rng.choice([1, 5, 100, 1000]))
            agnostic = bool(frame % 3 == 0)
            fast = batched_nms(boxes, scores, classes, iou, max_det, class_agnostic=agnostic)
            slow = batched_nms(boxes, scores, classes, iou, max_det, class_agnostic=agnostic,
                               engine='numpy')
            assert fast.tolist() == slow.tolist(), (frame, iou, max_det, agnostic)
            compared += len(scores)
    assert len(calls) == 600 and compared > 100_000  # the OpenCV loop did run every time


def test_the_numpy_loop_runs_where_opencv_lacks_nms_or_would_differ() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [5, 5, 5, 9], [5, 5, 5, 9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # Two empty boxes at one place: disjoint for this package (OpenCV would call them equal).
    want = [0, 2, 3]
    assert nms(boxes, scores, 0.5, 10).tolist() == want
    with mock.patch.object(nms_module, '_OPENCV_NMS', None):  # e.g. OpenCV without dnn
        assert nms(boxes, scores, 0.5, 10).tolist() == want
        assert batched_nms(boxes[:2], scores[:2], np.zeros(2, int), 0.5, 10).tolist() == [0]
    with pytest.raises(ValueError, match='engine'):
        nms(boxes, scores, 0.5, 10, engine='gpu')


def _candidates(boxes, scores, class_ids) -> CandidatePayload:
    return CandidatePayload(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                            np.asarray(class_ids, np.int64), ('ball', 'person'),
                            Letterbox(0.5, 0.0, 40.0), 640, 480, 'onnxruntime')


def test_stage_filters_suppresses_and_maps_back_to_the_image() -> None:
    c = _candidates([[10, 50, 30, 70], [11, 51, 31, 71], [100, 100, 120, 140], [0, 40, 8, 48]],
                    [0.9, 0.8, 0.7, 0.1], [0, 0, 1, 0])
    out, truncated = detections_from_candidates(c, NmsSettings(score_threshold=0.25))
    assert not truncated
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])  # overlap suppressed, 0.1 too low
    np.testing.assert_allclose(out.boxes[0], [20, 20, 60, 60])  # (model - pad) / scale
    assert not out.boxes.flags.writeable
    people, _ = detections_from_candidates(c, NmsSettings(classes=('person',)))
    assert people.class_ids.tolist() == [1]


def test_stage_keeps_the_best_candidates_beyond_its_cap() -> None:
    c = _candidates([[i * 20, 50, i * 20 + 10, 60] for i in range(5)],
                    [0.3, 0.9, 0.5, 0.8, 0.4], [0] * 5)
    out, truncated = detections_from_candidates(c, NmsSettings(max_candidates=2))
    assert truncated
    assert sorted(out.scores.tolist()) == pytest.approx([0.8, 0.9])


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(0, 40),
       scale=st.floats(0.01, 10.0), pad=st.floats(-1000.0, 1000.0),
       size=st.tuples(st.integers(1, 4000), st.integers(1, 4000)))
def test_detections_of_checked_candidates_pass_the_gate_rules(seed, count, scale, pad,
                                                              size) -> None:
    # What the in-process gate skips for a checked payload must hold: NMS's output of rows
    # within the candidate rules lies within the detection rules, wherever the boxes were.
    rng = np.random.default_rng(seed)
    corners = rng.uniform(-validate.MAX_BOX_COORD, validate.MAX_BOX_COORD, (count, 2, 2))
    corners[rng.random(count) < 0.5] *= 1e-3  # some near the image, some far out
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    scores = np.sort(rng.random(count).astype(np.float32))[::-1]
    candidates = CandidatePayload(
        read_only(boxes.astype(np.float32)), read_only(scores.copy()),
        read_only(rng.integers(0, 2, count).astype(np.int32)), ('ball', 'person'),
        Letterbox(scale, pad, -pad), size[0], size[1], 'onnxruntime', rows_checked=True)
    out, _ = detections_from_candidates(candidates, NmsSettings(score_threshold=0.0))
    assert out.rows_checked
    validate.check_boxes(out.boxes, out.scores, out.class_ids, validate.MAX_CLASSES,
                         'detections', size)
    unchecked = dataclasses.replace(candidates, rows_checked=False)
    assert not detections_from_candidates(unchecked, NmsSettings())[0].rows_checked

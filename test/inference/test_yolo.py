"""Tests of YOLO output decoding (through a real ONNX Runtime session), layouts and letterbox."""

from pathlib import Path

from edge_infer_ros.core import validate
from edge_infer_ros.core.geometry import Letterbox, unletterbox
from edge_infer_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_infer_ros.inference.model_info import load_model_info
from edge_infer_ros.inference.yolo import detect_layout, layout_num_classes
from edge_infer_ros.inference.yolo import YoloDecoder
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest
from support.onnx_models import background, make_yolov5_model, make_yolov8_model

HW = (64, 96)


def _run(path: Path, **info_kwargs) -> tuple[np.ndarray, YoloDecoder]:
    """Load a test model for real and run one frame through ONNX Runtime."""
    info = load_model_info(path, **info_kwargs)
    backend = OnnxRuntimeBackend(info, {'intra_op_threads': 1})
    backend.load()
    rng = np.random.default_rng(3)
    tensor = rng.random(info.input_shape).astype(info.input_dtype)
    output = backend.infer(tensor).copy()
    backend.release()
    return output, YoloDecoder(info.layout, info.num_classes)


def _planted_v8(num_classes: int = 4, num_anchors: int = 120):
    boxes, scores = background(num_anchors, num_classes, HW)
    # (anchor, class, score, cx, cy, w, h): exactly representable values.
    planted = [(7, 2, 0.875, 20.0, 30.0, 10.0, 8.0),
               (50, 0, 0.5, 40.5, 12.25, 6.5, 3.0),
               (99, 3, 0.96875, 80.0, 50.0, 20.0, 20.0),
               (100, 1, 0.3125, 1.0, 2.0, 4.0, 6.0)]
    for anchor, cls, score, cx, cy, w, h in planted:
        boxes[anchor] = (cx, cy, w, h)
        scores[anchor, cls] = score
    return boxes, scores, planted


def _expected(planted):
    planted = sorted(planted, key=lambda p: -p[2])
    boxes = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                      for _, _, _, cx, cy, w, h in planted], np.float32)
    scores = np.array([p[2] for p in planted], np.float32)
    classes = np.array([p[1] for p in planted], np.int32)
    return boxes, scores, classes


def test_decode_yolov8_through_onnxruntime(tmp_path: Path) -> None:
    boxes, scores, planted = _planted_v8()
    path, planted_output = make_yolov8_model(tmp_path / 'v8.onnx', 4, 120, HW, boxes, scores)
    output, decoder = _run(path)
    assert output.shape == (1, 8, 120)
    np.testing.assert_array_equal(output, planted_output)
    got_boxes, got_scores, got_classes = decoder.decode(output, 0.25)
    want_boxes, want_scores, want_classes = _expected(planted)
    np.testing.assert_array_equal(got_boxes, want_boxes)
    np.testing.assert_array_equal(got_scores, want_scores)
    np.testing.assert_array_equal(got_classes, want_classes)
    assert got_boxes.dtype == np.float32 and got_scores.dtype == np.float32
    assert got_classes.dtype == np.int32
    assert decoder.last_non_finite == 0


def test_decode_yolov5_through_onnxruntime(tmp_path: Path) -> None:
    n, c = 90, 3
    boxes, probs = background(n, c, HW)
    objectness = np.full(n, 0.5, np.float32)
    # (anchor, class, objectness, class prob, cx, cy, w, h)
    planted = [(3, 1, 0.75, 0.875, 10.0, 10.0, 4.0, 4.0),
               (44, 2, 1.0, 0.5, 60.0, 30.0, 12.0, 10.0),
               (89, 0, 0.5, 0.75, 33.0, 44.0, 2.0, 2.0)]
    for anchor, cls, obj, prob, cx, cy, w, h in planted:
        boxes[anchor] = (cx, cy, w, h)
        objectness[anchor] = obj
        probs[anchor, cls] = prob
    path, planted_output = make_yolov5_model(tmp_path / 'v5.onnx', c, n, HW, boxes,
                                             objectness, probs)
    output, decoder = _run(path, layout='yolov5')
    assert decoder.layout == 'yolov5'
    np.testing.assert_array_equal(output, planted_output)
    got_boxes, got_scores, got_classes = decoder.decode(output, 0.3)
    want = [(a, cls, np.float32(obj) * np.float32(prob), cx, cy, w, h)
            for a, cls, obj, prob, cx, cy, w, h in planted]
    want_boxes, want_scores, want_classes = _expected(want)
    np.testing.assert_array_equal(got_boxes, want_boxes)
    np.testing.assert_array_equal(got_scores, want_scores)
    np.testing.assert_array_equal(got_classes, want_classes)


def test_decode_float16_model(tmp_path: Path) -> None:
    boxes, scores, planted = _planted_v8()
    path, _ = make_yolov8_model(tmp_path / 'half.onnx', 4, 120, HW, boxes, scores,
                                dtype='float16')
    output, decoder = _run(path)
    assert output.dtype == np.float16
    got_boxes, got_scores, got_classes = decoder.decode(output, 0.25)
    want_boxes, want_scores, want_classes = _expected(planted)
    np.testing.assert_array_equal(got_boxes, want_boxes)
    np.testing.assert_array_equal(got_scores, want_scores)
    np.testing.assert_array_equal(got_classes, want_classes)
    assert got_boxes.dtype == np.float32


def _v8_output(scores: np.ndarray, boxes=None) -> np.ndarray:
    n = scores.shape[0]
    if boxes is None:
        boxes = np.tile(np.array([10.0, 10.0, 4.0, 4.0], np.float32), (n, 1))
    return np.ascontiguousarray(np.concatenate([boxes.T, scores.T])[None].astype(np.float32))


def test_decode_keeps_the_best_max_candidates_sorted() -> None:
    scores = np.zeros((50, 2), np.float32)
    scores[:, 1] = np.linspace(0.3, 0.9, 50)[np.random.default_rng(0).permutation(50)]
    decoder = YoloDecoder('yolov8', 2, max_candidates=5)
    _, got, classes = decoder.decode(_v8_output(scores), 0.25)
    np.testing.assert_array_equal(got, np.sort(scores[:, 1])[::-1][:5])
    assert (classes == 1).all()


def test_decode_threshold_is_inclusive_and_empty_result_has_shapes() -> None:
    scores = np.array([[0.5, 0.0], [0.25, 0.0], [0.1, 0.0]], np.float32)
    decoder = YoloDecoder('yolov8', 2)
    _, got, _ = decoder.decode(_v8_output(scores), 0.25)
    np.testing.assert_array_equal(got, [0.5, 0.25])
    boxes, got, classes = decoder.decode(_v8_output(scores), 0.9)
    assert boxes.shape == (0, 4) and got.shape == (0,) and classes.shape == (0,)


def test_decode_non_finite_values_are_reported_not_returned() -> None:
    scores = np.zeros((6, 3), np.float32)
    scores[0] = (np.nan, 0.8, 0.1)      # NaN score counts as 0: class 1 still found
    scores[1] = (np.inf, 0.1, 0.0)      # inf score counts as 0: nothing above threshold
    scores[2] = (0.9, 0.0, 0.0)         # good score but the box is broken: dropped
    scores[3] = (0.0, 0.0, 0.7)         # fine
    boxes = np.tile(np.array([10.0, 10.0, 4.0, 4.0], np.float32), (6, 1))
    boxes[2, 2] = np.nan
    boxes[4, 0] = np.inf                # below threshold anyway: not reported
    decoder = YoloDecoder('yolov8', 3)
    got_boxes, got_scores, got_classes = decoder.decode(_v8_output(scores, boxes), 0.5)
    np.testing.assert_array_equal(got_scores, np.array([0.8, 0.7], np.float32))
    np.testing.assert_array_equal(got_classes, [1, 2])
    assert np.isfinite(got_boxes).all()
    assert decoder.last_non_finite == 3
    decoder.decode(_v8_output(np.full((6, 3), 0.6, np.float32)), 0.5)
    assert decoder.last_non_finite == 0


def _plain_decode(rows: np.ndarray, layout: str, threshold: float):
    """
    Decode finite outputs plainly, one anchor per row (N, channels).

    Scores are taken in the output's precision (float16 YOLOv5: obj * cls rounds there),
    boxes in float32.
    """
    first = 4 if layout == 'yolov8' else 5
    cls = rows[:, first:]
    scores = cls.max(axis=1)
    if layout == 'yolov5':
        scores = scores * rows[:, 4]
    keep = np.flatnonzero(scores >= threshold)
    keep = keep[np.argsort(-scores[keep], kind='stable')]
    cx, cy, w, h = (rows[keep, i].astype(np.float32) for i in range(4))
    half_w, half_h = w * np.float32(0.5), h * np.float32(0.5)
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    return (boxes, scores[keep].astype(np.float32),
            cls[keep].argmax(axis=1).astype(np.int32))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), layout=st.sampled_from(['yolov8', 'yolov5']),
       classes=st.integers(1, 12), dtype=st.sampled_from([np.float32, np.float16]),
       scale=st.sampled_from([1.0, 640.0, 1e5, 1e30]))
def test_decode_of_finite_outputs_equals_the_plain_decode(seed, layout, classes, dtype,
                                                          scale) -> None:
    # Boxes to the last bit, whatever the magnitudes and signs (negative sizes too), scores
    # sorted with ties in anchor order, the first best class.
    rng = np.random.default_rng(seed)
    anchors = int(rng.integers(1, 300))
    rows = rng.random((anchors, classes + (4 if layout == 'yolov8' else 5)))
    rows[:, :4] = (rows[:, :4] - 0.3) * (scale if dtype == np.float32 else 640.0)
    rows[:, -classes:] = np.round(rows[:, -classes:] * 8) / 8  # ties in scores and classes
    rows = rows.astype(dtype)
    output = (rows.T if layout == 'yolov8' else rows)[None].copy()
    decoder = YoloDecoder(layout, classes, max_candidates=anchors)
    got = decoder.decode(output, 0.25)
    for got_array, want_array in zip(got, _plain_decode(rows, layout, 0.25)):
        np.testing.assert_array_equal(got_array, want_array)
        assert got_array.dtype == want_array.dtype
    assert decoder.last_non_finite == 0


def test_decode_yolov5_non_finite_objectness() -> None:
    out = np.zeros((1, 4, 7), np.float32)
    out[0, :, :4] = (10, 10, 4, 4)
    out[0, :, 4] = (np.nan, 1.0, np.inf, 0.5)
    out[0, :, 5] = (0.9, 0.9, 0.9, 0.1)
    out[0, :, 6] = (0.0, 0.0, 0.0, 0.9)
    decoder = YoloDecoder('yolov5', 2)
    _, scores, classes = decoder.decode(out, 0.3)
    np.testing.assert_array_equal(scores, np.array([0.9, 0.45], np.float32))
    np.testing.assert_array_equal(classes, [0, 1])
    assert decoder.last_non_finite == 2


def test_decode_rejects_a_wrong_shape() -> None:
    decoder = YoloDecoder('yolov8', 4)
    with pytest.raises(ValueError, match=r'\[1, 8, N\]'):
        decoder.decode(np.zeros((1, 9, 100), np.float32), 0.5)
    with pytest.raises(ValueError, match='batch'):
        decoder.decode(np.zeros((2, 8, 100), np.float32), 0.5)
    with pytest.raises(ValueError):
        YoloDecoder('yolov7', 4)


@pytest.mark.parametrize('shape, classes, layout, implied', [
    ((1, 8, 2100), None, 'yolov8', 4),
    ((1, 8, 2100), 4, 'yolov8', 4),
    ((1, 84, 8400), 80, 'yolov8', 80),
    ((1, 6300, 9), None, 'yolov5', 4),
    ((1, 25200, 85), 80, 'yolov5', 80),
    ((1, 7, 9), 4, 'yolov5', 4),
    ((1, 7, 9), 3, 'yolov8', 3),
])
def test_detect_layout(shape, classes, layout, implied) -> None:
    assert detect_layout(shape, classes) == layout
    assert layout_num_classes(shape, layout) == implied


@pytest.mark.parametrize('shape, classes', [
    ((1, 7, 9), 5),
    ((1, 4, 9), None),
    ((1, 84), None),
    ((2, 84, 8400), 80),
    ((1, 9, 9), None),
    ((1, 8, 2100), 5),
])
def test_detect_layout_errors_say_what_was_expected(shape, classes) -> None:
    with pytest.raises(ValueError, match=r'matches no known YOLO layout.*\[1, 4\+C, N\]'):
        detect_layout(shape, classes)


def test_layout_num_classes_errors() -> None:
    with pytest.raises(ValueError, match='cannot be yolov5'):
        layout_num_classes((1, 8, 5), 'yolov5')
    with pytest.raises(ValueError, match='unknown YOLO layout'):
        layout_num_classes((1, 8, 100), 'ssd')


def test_letterbox_fit() -> None:
    lb = Letterbox.fit(640, 480, 320, 320)
    assert (lb.scale, lb.pad_x, lb.pad_y) == (0.5, 0.0, 40.0)
    lb = Letterbox.fit(480, 640, 256, 256)
    assert (lb.scale, lb.pad_x, lb.pad_y) == (0.4, 32.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(image_w=st.integers(1, 4000), image_h=st.integers(1, 4000),
       input_w=st.sampled_from([256, 320, 640]), input_h=st.sampled_from([256, 320, 640]),
       seed=st.integers(0, 2**32 - 1), count=st.integers(0, 20))
def test_unletterbox_inverts_letterbox(image_w, image_h, input_w, input_h, seed, count) -> None:
    rng = np.random.default_rng(seed)
    lo = rng.uniform(0, 1, (count, 2)) * (image_w, image_h)
    hi = lo + rng.uniform(0, 1, (count, 2)) * ((image_w, image_h) - lo)
    original = np.concatenate([lo, hi], axis=1)
    lb = Letterbox.fit(image_w, image_h, input_w, input_h)
    pad = np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y])
    model = (original * lb.scale + pad).astype(np.float32)
    back = unletterbox(model, lb, image_w, image_h)
    assert back.dtype == np.float32 and back.shape == original.shape
    # float32 model pixels: error below a few ulps of the largest coordinate, in image pixels.
    tolerance = 4 * np.finfo(np.float32).eps * max(input_w, input_h) / lb.scale + 1e-6
    np.testing.assert_allclose(back, original, rtol=0, atol=tolerance)
    assert (back[:, 0::2] >= 0).all() and (back[:, 0::2] <= image_w).all()
    assert (back[:, 1::2] >= 0).all() and (back[:, 1::2] <= image_h).all()


def test_unletterbox_clips_and_writes_into_out() -> None:
    lb = Letterbox(0.5, 0.0, 40.0)
    boxes = np.array([[-10.0, 10.0, 330.0, 300.0], [100.0, 140.0, 120.0, 160.0]], np.float32)
    out = boxes.copy()
    result = unletterbox(out, lb, 640, 480, out=out)
    assert result is out
    np.testing.assert_array_equal(out, [[0.0, 0.0, 640.0, 480.0], [200.0, 200.0, 240.0, 240.0]])
    with pytest.raises(ValueError):
        unletterbox(np.zeros((2, 3)), lb, 640, 480)


def _gate_passes(boxes: np.ndarray, scores: np.ndarray, ids: np.ndarray, classes: int) -> bool:
    """Tell whether the gate's row rules for candidates accept a decoder's output."""
    try:
        validate.check_boxes(boxes, scores, ids, classes, 'candidates')
    except validate.InputRefused:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), layout=st.sampled_from(['yolov8', 'yolov5']),
       classes=st.integers(1, 30), odd_share=st.sampled_from([0.0, 0.01, 0.1, 0.5]))
def test_rows_the_decoder_calls_ok_pass_the_gate(seed, layout, classes, odd_share) -> None:
    # The next stage's gate skips the rows of candidates the decoder called ok: it must
    # never call ok what the gate would refuse, whatever a broken model puts out.
    rng = np.random.default_rng(seed)
    anchors = 64
    out = rng.random((anchors, classes + (4 if layout == 'yolov8' else 5)), np.float32)
    out[:, :4] *= 640
    odd = rng.random(out.shape) < odd_share
    out[odd] = rng.choice(np.array([-3.0, 1.5, 2e6, -2e6, np.nan, np.inf], np.float32),
                          int(odd.sum()))
    output = (out.T if layout == 'yolov8' else out)[None].copy()
    decoder = YoloDecoder(layout, classes)
    boxes, scores, ids = decoder.decode(output, float(rng.choice([0.0, 0.25, 0.5])))
    if decoder.last_rows_ok:
        assert _gate_passes(boxes, scores, ids, classes)


@pytest.mark.parametrize('row, rule', [((10, 10, -4, 4, 0.9), 'inverted'),
                                       ((10, 10, 4, 4, 1.5), 'score'),
                                       ((3e6, 10, 4, 4, 0.9), 'coordinate'),
                                       ((10, 10, 4, 4, 0.9), '')])
def test_the_decoder_says_which_outputs_break_a_rule(row, rule) -> None:
    scores = np.zeros((6, 2), np.float32)
    scores[0, 1] = row[4]
    boxes = np.tile(np.array([10.0, 10.0, 4.0, 4.0], np.float32), (6, 1))
    boxes[0] = row[:4]
    decoder = YoloDecoder('yolov8', 2)
    got = decoder.decode(_v8_output(scores, boxes), 0.25)
    assert decoder.last_rows_ok == (not rule) == _gate_passes(*got, 2)

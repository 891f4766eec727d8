"""The detector stage on a real ONNX Runtime session: run, decode, count bad outputs."""

from __future__ import annotations

from pathlib import Path
import time

from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.geometry import Letterbox
from edge_infer_ros.core.payloads import TensorPayload
from edge_infer_ros.core.validate import check_envelope, InputRefused
from edge_infer_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_infer_ros.inference.model_info import load_model_info
from edge_infer_ros.stages.detector import Detector, drop_warning, Onboarding, warm_up
import numpy as np
import pytest
from support.onnx_models import make_yolov8_model

LETTERBOX = Letterbox(0.5, 0.0, 4.0)


def _detector(tmp_path: Path, scores: np.ndarray, boxes: np.ndarray,
              max_candidates: int = 300) -> Detector:
    # Low-score background anchors after the planted ones: a layout needs more anchors than
    # channels.
    pad = 16
    scores = np.vstack([scores, np.full((pad, scores.shape[1]), 0.01, np.float32)])
    boxes = np.vstack([boxes, np.full((pad, 4), 8.0, np.float32)])
    path, _ = make_yolov8_model(tmp_path / 'm.onnx', scores.shape[1], scores.shape[0],
                                (32, 32), boxes=boxes, scores=scores)
    model = load_model_info(path)
    backend = OnnxRuntimeBackend(model, {'intra_op_threads': 1})
    backend.load()
    return Detector(backend, model, max_candidates)


def _tensor(shape=(1, 3, 32, 32), dtype=np.float32) -> TensorPayload:
    return TensorPayload(np.zeros(shape, dtype), LETTERBOX, 64, 56)


def test_candidates_above_the_threshold_carry_the_frame_geometry(tmp_path) -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.6], [0.1, 0.1]], np.float32)
    boxes = np.array([[10, 10, 4, 4], [20, 20, 6, 8], [5, 5, 2, 2]], np.float32)
    detector = _detector(tmp_path, scores, boxes)
    out = detector(_tensor(), 0.5)
    assert sorted(out.scores.tolist()) == pytest.approx([0.6, 0.9])
    assert sorted(out.class_ids.tolist()) == [0, 1]
    assert out.letterbox == LETTERBOX and (out.image_width, out.image_height) == (64, 56)
    assert out.backend == 'onnxruntime' and detector.inferences == 1
    assert detector.last_non_finite == 0


def test_non_finite_outputs_are_dropped_and_counted(tmp_path) -> None:
    scores = np.array([[0.9], [np.nan], [0.8]], np.float32)
    boxes = np.array([[10, 10, 4, 4], [20, 20, 6, 8], [np.inf, 5, 2, 2]], np.float32)
    detector = _detector(tmp_path, scores, boxes)
    out = detector(_tensor(), 0.5)
    assert out.scores.tolist() == pytest.approx([0.9]) and np.isfinite(out.boxes).all()
    assert detector.last_non_finite == 2
    detector(_tensor(), 0.5)
    assert detector.non_finite_outputs == 4 and detector.inferences == 2


@pytest.mark.parametrize('score, width, checked', [(0.9, 4.0, True), (1.5, 4.0, False),
                                                   (0.9, -4.0, False)])
def test_candidates_say_whether_their_rows_need_judging(tmp_path, score, width,
                                                        checked) -> None:
    # A model that puts out a score above 1 or a negative width: the next stage's gate must
    # judge (and refuse) its rows; the candidates of a sane output need no second look.
    scores = np.array([[score, 0.1], [0.2, 0.6]], np.float32)
    boxes = np.array([[10, 10, width, 4], [20, 20, 6, 8]], np.float32)
    out = _detector(tmp_path, scores, boxes)(_tensor(), 0.5)
    assert out.rows_checked is checked
    assert not (out.boxes.flags.writeable or out.scores.flags.writeable or
                out.class_ids.flags.writeable)
    envelope = Envelope('camera', 1, time.time_ns(), 'camera', (), out)
    if checked:
        check_envelope(envelope, time.time_ns())
    else:
        with pytest.raises(InputRefused):
            check_envelope(envelope, time.time_ns())


def test_max_candidates_applies_from_the_next_frame(tmp_path) -> None:
    scores = np.linspace(0.5, 0.95, 10, dtype=np.float32)[:, None]
    boxes = np.tile(np.array([[10, 10, 4, 4]], np.float32), (10, 1))
    detector = _detector(tmp_path, scores, boxes, max_candidates=8)
    assert detector(_tensor(), 0.4).scores.size == 8
    detector.set_max_candidates(3)
    assert sorted(detector(_tensor(), 0.4).scores.tolist()) == pytest.approx(
        sorted(scores[-3:, 0].tolist()))


@pytest.mark.parametrize('shape, dtype', [((1, 3, 16, 32), np.float32),
                                          ((1, 3, 32, 32), np.float64)])
def test_a_tensor_that_does_not_fit_the_model_is_refused(tmp_path, shape, dtype) -> None:
    detector = _detector(tmp_path, np.full((2, 1), 0.9, np.float32),
                         np.full((2, 4), 8.0, np.float32))
    with pytest.raises(ValueError, match='expects a tensor of shape'):
        detector(_tensor(shape, dtype), 0.5)
    assert detector.inferences == 0


def test_warm_up_runs_the_model_without_counting_frames(tmp_path) -> None:
    detector = _detector(tmp_path, np.array([[0.9, 0.1]], np.float32),
                         np.array([[10, 10, 4, 4]], np.float32))
    times = warm_up(detector, 4)
    assert len(times) == 4 and all(t > 0 for t in times)
    assert detector.inferences == 0


def test_onboarding_names_the_sustainable_rate_of_a_slow_model() -> None:
    slow = Onboarding.from_runs([90.0, 40.0, 41.0, 39.0], budget_ms=14.0, expected_fps=30.0)
    assert slow.inference_ms == 40.0 and slow.sustainable_fps == 25.0
    text = slow.warning()
    assert '40.0 ms (warm-up median) > the detector budget 14.0 ms' in text
    assert "about 25.0 fps < the camera's 30.0 fps" in text and '17%' in text
    fast = Onboarding.from_runs([30.0, 5.0, 5.0], budget_ms=14.0, expected_fps=30.0)
    assert fast.warning() == ''
    unknown_rate = Onboarding.from_runs([30.0, 20.0], budget_ms=None, expected_fps=0.0)
    assert unknown_rate.warning() == ''
    assert Onboarding.from_runs([], 14.0, 30.0) is None


def test_a_detector_dropping_most_frames_warns() -> None:
    assert drop_warning(40, 100, 0.5, 10.0) == ''
    assert 'dropping 60 of 100 frames in 10 s (60% > max_drop_share 50%)' in \
        drop_warning(60, 100, 0.5, 10.0)
    assert drop_warning(0, 0, 0.5, 10.0) == ''


def test_a_model_whose_outputs_are_all_nan_is_judged_sick(tmp_path) -> None:
    # Issue 29: non_finite_outputs was counted but the detector stayed OK.
    from edge_infer_ros.stages.detector import SICK_MIN_FRAMES
    from support.onnx_models import make_constant_output_model
    path = make_constant_output_model(tmp_path / 'nan.onnx',
                                      np.full((1, 8, 64), np.nan, np.float32), (32, 32))
    model = load_model_info(path)
    backend = OnnxRuntimeBackend(model, {'intra_op_threads': 1})
    backend.load()
    detector = Detector(backend, model, 300)
    for frame in range(SICK_MIN_FRAMES):
        assert detector.output_verdict() == ('', '')  # too few frames to judge
        assert detector(_tensor(), 0.25).scores.size == 0
    level, text = detector.output_verdict()
    assert level == 'error' and f'{SICK_MIN_FRAMES} of the last {SICK_MIN_FRAMES}' in text
    assert str(64 * SICK_MIN_FRAMES) in text  # the count of anchors dropped

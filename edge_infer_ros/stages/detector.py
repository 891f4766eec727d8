"""
Detector stage: one model run per tensor, decoded into score-filtered candidates.

Why plain: the order (run, decode, count what the model got wrong) and the counters are the
stage's behaviour, tested here on a real ONNX Runtime session without ROS. The node only
loads the model (with fallback) and reports the counters.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math
import time
from typing import Optional

from edge_infer_ros.core.image import read_only
from edge_infer_ros.core.payloads import CandidatePayload, TensorPayload
from edge_infer_ros.core.validate import MAX_CLASSES
from edge_infer_ros.inference.backends.base import DetectorBackend
from edge_infer_ros.inference.model_info import ModelInfo
from edge_infer_ros.inference.yolo import YoloDecoder
import numpy as np


#: Frames over which the share of sick outputs (holding NaN/inf) is judged; the shares at
#: which the detector is WARN and ERROR, and the fewest frames judged at all.
SICK_WINDOW = 50
SICK_WARN_SHARE = 0.1
SICK_ERROR_SHARE = 0.5
SICK_MIN_FRAMES = 10


class Detector:
    """Runs the backend on a tensor and decodes its output; counts runs and bad outputs."""

    def __init__(self, backend: DetectorBackend, model: ModelInfo, max_candidates: int) -> None:
        self.backend = backend
        self.model = model
        self.decoder = YoloDecoder(model.layout, model.num_classes, max_candidates)
        self.inferences = 0
        #: anchors whose output held NaN or inf, over all frames (dropped, never passed on)
        self.non_finite_outputs = 0
        #: frames whose output held NaN or inf: over all frames, and the last SICK_WINDOW
        self.sick_frames = 0
        self._recent_sick: deque[bool] = deque(maxlen=SICK_WINDOW)
        # The gate bounds class ids by the class names (all classes when there are none).
        names = len(model.class_names)
        self._ids_named = model.num_classes <= (names or MAX_CLASSES)

    def set_max_candidates(self, max_candidates: int) -> None:
        """Keep at most this many candidates per frame from the next frame on."""
        self.decoder = YoloDecoder(self.model.layout, self.model.num_classes, max_candidates)

    def __call__(self, payload: TensorPayload, score_threshold: float) -> CandidatePayload:
        """
        Return the candidates of one tensor (the backend refuses a wrong shape or dtype).

        Their arrays are read-only; ``rows_checked`` says whether the decoder found every row
        within the gate's rules (the next stage then judges only the frame, not each row).
        After the call, :attr:`last_non_finite` tells how many anchors of this frame held
        non-finite values (dropped).
        """
        output = self.backend.infer(payload.tensor)
        self.inferences += 1
        boxes, scores, class_ids = self.decoder.decode(output, score_threshold)
        self.non_finite_outputs += self.decoder.last_non_finite
        sick = self.decoder.last_non_finite > 0
        self.sick_frames += sick
        self._recent_sick.append(sick)
        return CandidatePayload(read_only(boxes), read_only(scores), read_only(class_ids),
                                self.model.class_names, payload.letterbox, payload.image_width,
                                payload.image_height, self.backend.name, payload.image,
                                payload.image_encoding,
                                self.decoder.last_rows_ok and self._ids_named)

    def output_verdict(self) -> tuple[str, str]:
        """
        Return ('', ''), ('warn', why) or ('error', why) for the model's recent outputs.

        A model whose outputs hold NaN/inf for a sustained share of frames is sick (an
        overflowing float16 engine, a corrupt file): its frames give no detections, which
        must not read as an empty scene.
        """
        frames = len(self._recent_sick)
        if frames < SICK_MIN_FRAMES:
            return '', ''
        sick = sum(self._recent_sick)
        share = sick / frames
        if share < SICK_WARN_SHARE:
            return '', ''
        text = (f'model output held NaN/inf in {sick} of the last {frames} frames '
                f'({self.non_finite_outputs} anchors dropped so far): the model or its '
                'engine is broken')
        return ('error' if share >= SICK_ERROR_SHARE else 'warn'), text

    @property
    def last_non_finite(self) -> int:
        """Anchors of the last frame whose output held NaN or inf."""
        return self.decoder.last_non_finite


def warm_up(detector: Detector, runs: int) -> list[float]:
    """
    Run the model ``runs`` times on a blank tensor; return each run's time (ms, monotonic).

    The first runs of a session pay allocation, kernel selection and cold caches; paid at
    configure, they are not paid by the first frames (and not counted as inferences).
    """
    model = detector.model
    tensor = np.zeros(model.input_shape, dtype=np.dtype(model.input_dtype))
    times_ms = []
    for _ in range(runs):
        began = time.perf_counter_ns()
        detector.backend.infer(tensor)
        times_ms.append((time.perf_counter_ns() - began) / 1e6)
    return times_ms


@dataclass(frozen=True)
class Onboarding:
    """
    What the warm-up says of a model before any frame flows: its time against the budget.

    ``inference_ms`` is the median of the warm-up runs after the first (the first pays the
    session's start); ``budget_ms`` the detector's stage budget (None: none known) and
    ``expected_fps`` the camera rate the detector must keep up with (0: unknown).
    """

    inference_ms: float
    budget_ms: Optional[float]
    expected_fps: float

    @classmethod
    def from_runs(cls, times_ms: list[float], budget_ms: Optional[float],
                  expected_fps: float) -> Optional['Onboarding']:
        """Judge the warm-up runs (None: too few runs to judge)."""
        steady = sorted(times_ms[1:] if len(times_ms) > 1 else times_ms)
        if not steady:
            return None
        return cls(steady[len(steady) // 2], budget_ms, expected_fps)

    @property
    def sustainable_fps(self) -> float:
        """Frames per second this model can run back to back."""
        return 1000.0 / self.inference_ms if self.inference_ms > 0 else math.inf

    def warning(self) -> str:
        """Return why the model will not hold its budget or the camera rate ('' if it will)."""
        problems = []
        if self.budget_ms is not None and self.inference_ms > self.budget_ms:
            problems.append(f'inference takes {self.inference_ms:.1f} ms (warm-up median) > '
                            f'the detector budget {self.budget_ms:.1f} ms')
        if self.expected_fps > 0 and self.sustainable_fps < self.expected_fps:
            problems.append(f"it sustains about {self.sustainable_fps:.1f} fps < the camera's "
                            f'{self.expected_fps:.1f} fps: keep-latest will drop about '
                            f'{1 - self.sustainable_fps / self.expected_fps:.0%} of the frames')
        if not problems:
            return ''
        return ('model too slow for this pipeline: ' + '; '.join(problems) +
                ' (a smaller input, an INT8 model or TensorRT, or a lower camera rate)')


def drop_warning(dropped: int, received: int, max_share: float, window_s: float) -> str:
    """Return a WARN when more than ``max_share`` of the window's frames were dropped."""
    if received <= 0 or dropped / received <= max_share:
        return ''
    share = dropped / received
    return (f'dropping {dropped} of {received} frames in {window_s:.0f} s ({share:.0%} > '
            f'max_drop_share {max_share:.0%}): inference cannot keep up with the camera')

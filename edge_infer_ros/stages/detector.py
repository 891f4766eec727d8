"""
Detector stage: one model run per tensor, decoded into score-filtered candidates.

Why plain: the order (run, decode, count what the model got wrong) and the counters are the
stage's behaviour, tested here on a real ONNX Runtime session without ROS. The node only
loads the model (with fallback) and reports the counters.
"""

from __future__ import annotations

from collections import deque

from edge_infer_ros.core.payloads import CandidatePayload, TensorPayload
from edge_infer_ros.inference.backends.base import DetectorBackend
from edge_infer_ros.inference.model_info import ModelInfo
from edge_infer_ros.inference.yolo import YoloDecoder


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

    def set_max_candidates(self, max_candidates: int) -> None:
        """Keep at most this many candidates per frame from the next frame on."""
        self.decoder = YoloDecoder(self.model.layout, self.model.num_classes, max_candidates)

    def __call__(self, payload: TensorPayload, score_threshold: float) -> CandidatePayload:
        """
        Return the candidates of one tensor (the backend refuses a wrong shape or dtype).

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
        return CandidatePayload(boxes, scores, class_ids, self.model.class_names,
                                payload.letterbox, payload.image_width, payload.image_height,
                                self.backend.name, payload.image)

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

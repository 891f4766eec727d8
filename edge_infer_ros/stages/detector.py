"""
Detector stage: one model run per tensor, decoded into score-filtered candidates.

Why plain: the order (run, decode, count what the model got wrong) and the counters are the
stage's behaviour, tested here on a real ONNX Runtime session without ROS. The node only
loads the model (with fallback) and reports the counters.
"""

from __future__ import annotations

from edge_infer_ros.core.payloads import CandidatePayload, TensorPayload
from edge_infer_ros.inference.backends.base import DetectorBackend
from edge_infer_ros.inference.model_info import ModelInfo
from edge_infer_ros.inference.yolo import YoloDecoder


class Detector:
    """Runs the backend on a tensor and decodes its output; counts runs and bad outputs."""

    def __init__(self, backend: DetectorBackend, model: ModelInfo, max_candidates: int) -> None:
        self.backend = backend
        self.model = model
        self.decoder = YoloDecoder(model.layout, model.num_classes, max_candidates)
        self.inferences = 0
        #: anchors whose output held NaN or inf, over all frames (dropped, never passed on)
        self.non_finite_outputs = 0

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
        return CandidatePayload(boxes, scores, class_ids, self.model.class_names,
                                payload.letterbox, payload.image_width, payload.image_height,
                                self.backend.name, payload.image, payload.image_encoding)

    @property
    def last_non_finite(self) -> int:
        """Anchors of the last frame whose output held NaN or inf."""
        return self.decoder.last_non_finite

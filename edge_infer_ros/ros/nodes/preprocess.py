"""
Preprocess stage: letterbox, colour order, normalisation and layout for the model.

The model's input size, colour order and padding value are read from the model file (the
same ``model_path`` as the detector's), so the two can never disagree.
"""

from __future__ import annotations

from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticStatus
from edge_infer_ros.core.awake import KEEPERS
from edge_infer_ros.core.clock import JumpWatch
from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.geometry import Letterbox
from edge_infer_ros.core.image import ImageError
from edge_infer_ros.core.image_encodings import image_size
from edge_infer_ros.core.params import ParamSpec
from edge_infer_ros.core.payloads import ImagePayload, TensorPayload
from edge_infer_ros.core.resources import resolve_model_path
from edge_infer_ros.core.stamps import StampOrder
from edge_infer_ros.inference.model_info import load_model_info
from edge_infer_ros.ros import convert, topics
from edge_infer_ros.ros.nodes.base import StageNode
from edge_infer_ros.ros.process import run_single
from edge_infer_ros.stages.preprocess import Preprocessor
from edge_infer_ros_msgs.msg import TensorFrame
from sensor_msgs.msg import CompressedImage, Image

MODEL_PARAMS = (
    ParamSpec('model_path', '', 'ONNX model file (empty: the model shipped with the package)',
              runtime=False),
    ParamSpec('model_sha256', '', 'expected sha256 of the model file (empty: the one in its '
              'metadata, if any); a different file is refused', runtime=False),
)


class PreprocessNode(StageNode):
    """Turns images from ``image_raw`` into model tensors on ``tensor``."""

    STAGE = 'preprocess'
    DEFAULT_NAME = 'preprocess'
    PARAMS = MODEL_PARAMS + (
        ParamSpec('input_transport', 'raw', 'form of the input image topics: raw or '
                  'compressed (<topic>/compressed)', choices=('raw', 'compressed'),
                  runtime=False),
        ParamSpec('image_topics', [topics.IMAGE_RAW], 'image topics to preprocess: several '
                  'cameras share one detector (each keeps its own frame_id and trace)',
                  list_of=str, runtime=False, check=lambda names: None if names else
                  'image_topics needs at least one topic'),
        ParamSpec('range16_min', 0, '16-bit images (mono16, rgb16, 16-bit Bayer...): the value '
                  'mapped to 0 (e.g. the coldest of a thermal camera scene)', low=0,
                  high=65534),
        ParamSpec('range16_max', 65535, '16-bit images: the value mapped to 255 (above it '
                  'saturates); must exceed range16_min', low=1, high=65535),
        ParamSpec('stamp_fault_hold_s', 5.0, 'a stamp going back keeps the node WARN this '
                  'long after the last one, s', low=0.1, high=3600.0),
    )
    DEFAULT_INPUT_MODE = 'inline'
    DEFAULT_INPUT_RELIABILITY = 'best_effort'

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        # One preprocessor (reused buffers) per image topic: cameras run in their own threads.
        self._preprocessors: dict[str, Preprocessor] = {}
        self._seq: dict[str, int] = {}
        self._model_size: Optional[tuple[int, int]] = None
        self.stamps = StampOrder(self.p['stamp_fault_hold_s'])
        self._jumps = JumpWatch(self.clock)

    @property
    def non_monotonic_stamps(self) -> int:
        """Stamps that went back since the start, over every camera."""
        return self.stamps.count

    def parameters_changed(self, changed: dict[str, Any]) -> None:
        """Apply a new stamp_fault_hold_s to the fault shown now, a new 16-bit range."""
        self.stamps.hold_s = self.p['stamp_fault_hold_s']
        for preprocessor in self._preprocessors.values():
            preprocessor.converter.set_range(self.p['range16_min'], self.p['range16_max'])

    def check_parameters(self, updates: dict[str, Any]) -> Optional[str]:
        """Refuse an empty 16-bit range."""
        low = updates.get('range16_min', self.p['range16_min'])
        high = updates.get('range16_max', self.p['range16_max'])
        return None if low < high else f'range16_min {low} must be below range16_max {high}'

    def create_io(self) -> None:
        """Create an input per image topic (or its compressed form) and the tensor output."""
        for topic in self.p['image_topics']:
            self._add_image_input(topic)
        self.tensor_out = self.add_output(topics.TENSOR, TensorFrame, convert.tensor_to_msg)

    def _add_image_input(self, topic: str) -> None:
        """One camera's input: raw images, or their JPEG/PNG form on <topic>/compressed."""
        compressed = self.p['input_transport'] == 'compressed'
        decode = self._decompress if compressed else convert.image_from_msg
        self.add_input(f'{topic}/compressed' if compressed else topic,
                       CompressedImage if compressed else Image,
                       lambda msg: self._from_msg(msg, topic, decode),
                       lambda envelope, received_ns: self._on_image(envelope, received_ns, topic))

    def configure_stage(self) -> None:
        """Read the model's input format and allocate the buffers."""
        model = load_model_info(resolve_model_path(self.p['model_path']),
                                expected_sha256=self.p['model_sha256'])
        _, _, height, width = model.input_shape
        self._model_size = (width, height)
        self._preprocessors = {
            topic: Preprocessor(width, height, model.color_order, model.letterbox_pad_value,
                                model.input_dtype,
                                (self.p['range16_min'], self.p['range16_max']))
            for topic in self.p['image_topics']}

    def cleanup_stage(self) -> None:
        """Free the buffers."""
        self._preprocessors = {}

    def _decompress(self, msg: CompressedImage, seq: int) -> Envelope:
        """Decode a JPEG at the reduced scale the model input needs."""
        return convert.compressed_from_msg(msg, seq, self._model_size)

    def _from_msg(self, msg: Any, topic: str, convert_msg: Any) -> Envelope:
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        return convert_msg(msg, seq)

    def _on_image(self, envelope: Envelope, received_ns: int, topic: str) -> None:
        KEEPERS.frame_coming()  # the inference's CPUs wake while this stage runs, not after
        start = self.clock.mono_ns()
        now = self.clock.now_ns()
        if self._jumps.jumped():
            self.stamps.reset()  # stamps of the old time line are no order to keep
        payload = envelope.payload
        if not isinstance(payload, ImagePayload):
            raise ImageError(f'expected an image, got {type(payload).__name__}')
        if self.stamps.repeated(envelope.camera, envelope.stamp_ns):
            self.get_logger().warning(
                f'camera {envelope.camera}: the same frame (stamp {envelope.stamp_ns} ns) came '
                'again and is skipped: is the image published twice?',
                throttle_duration_sec=5.0)
            return  # counted (duplicate_frames); processing it again would command it twice
        fault = self.stamps.observe(envelope.camera, envelope.stamp_ns, envelope.seq, now)
        if fault:  # counted and reported; the frame is still a valid image
            self.get_logger().warning(fault, throttle_duration_sec=1.0)
        preprocessor = self._preprocessors[topic]
        # Into a shared-memory sample when the detector is another process on this host.
        with self.tensor_out.loaned(preprocessor.tensor_shape,
                                    preprocessor.tensor_dtype) as loan:
            tensor, letterbox = preprocessor(payload.image, payload.encoding,
                                             None if loan is None else loan.array)
            width, height = payload.full_size or image_size(payload.image, payload.encoding)
            if payload.scale_down > 1:  # decoded reduced: map boxes to the pixels as sent
                letterbox = Letterbox(letterbox.scale / payload.scale_down, letterbox.pad_x,
                                      letterbox.pad_y)
            out = TensorPayload(tensor, letterbox, width, height, payload.image,
                                payload.encoding)
            self.emit(self.tensor_out, envelope, out, received_ns, start, loan)

    def stage_status(self) -> DiagnosticStatus:
        """Report the base status; a stamp fault clears stamp_fault_hold_s after the last."""
        now = self.clock.now_ns()
        if self._jumps.jumped():
            self.stamps.reset()
        self.fault = self.stamps.fault(now)
        return super().stage_status()

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """Buffer reuse counter (flat in steady state)."""
        allocations = sum(p.tensor_allocations for p in self._preprocessors.values())
        return [('tensor_allocations', str(allocations)),
                ('non_monotonic_stamps', str(self.non_monotonic_stamps)),
                ('duplicate_frames', str(self.stamps.duplicates))]


def main(args: Optional[list[str]] = None) -> None:
    """Run the preprocess node on its own."""
    run_single(PreprocessNode, args)


if __name__ == '__main__':
    main()

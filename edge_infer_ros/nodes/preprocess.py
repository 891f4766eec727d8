"""
Preprocess stage: letterbox, colour order, normalisation and layout for the model.

The model's input size, colour order and padding value are read from the model file (the
same ``model_path`` as the detector's), so the two can never disagree.
"""

from __future__ import annotations

from typing import Any, Optional

from edge_infer_ros import convert, tracing
from edge_infer_ros.imaging import ImageError, Preprocessor
from edge_infer_ros.model_info import load_model_info
from edge_infer_ros.nodes.base import run_single, StageNode
from edge_infer_ros.params import ParamSpec
from edge_infer_ros.payloads import ImagePayload, TensorPayload
from edge_infer_ros.resources import resolve_model_path
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
        ParamSpec('input_transport', 'raw', 'form of the input image topic: raw (image_raw) '
                  'or compressed (image_raw/compressed)', choices=('raw', 'compressed'),
                  runtime=False),
    )
    DEFAULT_INPUT_MODE = 'inline'
    DEFAULT_INPUT_RELIABILITY = 'best_effort'

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._preprocessor: Optional[Preprocessor] = None
        self._seq = 0

    def create_io(self) -> None:
        """Input image_raw (or its compressed form), output tensor."""
        if self.p['input_transport'] == 'compressed':
            self.add_input('image_raw/compressed', CompressedImage, self._compressed_from_msg,
                           self._on_image, convert.message_key)
        else:
            self.add_input('image_raw', Image, self._image_from_msg, self._on_image,
                           convert.message_key)
        self.tensor_out = self.add_output('tensor', TensorFrame, convert.tensor_to_msg,
                                          convert.envelope_key)

    def configure_stage(self) -> None:
        """Read the model's input format and allocate the buffers."""
        model = load_model_info(resolve_model_path(self.p['model_path']),
                                expected_sha256=self.p['model_sha256'])
        _, _, height, width = model.input_shape
        self._preprocessor = Preprocessor(width, height, model.color_order,
                                          model.letterbox_pad_value, model.input_dtype)

    def cleanup_stage(self) -> None:
        """Free the buffers."""
        self._preprocessor = None

    def _image_from_msg(self, msg: Image) -> tracing.Envelope:
        self._seq += 1
        return convert.image_from_msg(msg, self._seq - 1)

    def _compressed_from_msg(self, msg: CompressedImage) -> tracing.Envelope:
        self._seq += 1
        return convert.compressed_from_msg(msg, self._seq - 1)

    def _on_image(self, envelope: tracing.Envelope, received_ns: int) -> None:
        start = tracing.now_ns()
        payload = envelope.payload
        if not isinstance(payload, ImagePayload):
            raise ImageError(f'expected an image, got {type(payload).__name__}')
        tensor, letterbox = self._preprocessor(payload.image, payload.encoding)
        height, width = payload.image.shape[:2]
        out = TensorPayload(tensor, letterbox, width, height, payload.image)
        self.tensor_out.publish(envelope.forward(out, self.timing(received_ns, start)))

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """Buffer reuse counter (flat in steady state)."""
        pre = self._preprocessor
        return [('tensor_allocations', str(pre.tensor_allocations if pre else 0))]


def main(args: Optional[list[str]] = None) -> None:
    """Run the preprocess node on its own."""
    run_single(PreprocessNode, args)


if __name__ == '__main__':
    main()

"""NMS stage: class-aware non-maximum suppression, boxes mapped back to the original image."""

from __future__ import annotations

from typing import Any, Optional

from edge_infer_ros import convert, tracing
from edge_infer_ros.imaging import read_only
from edge_infer_ros.nms import batched_nms
from edge_infer_ros.nodes.base import run_single, StageNode
from edge_infer_ros.params import ParamSpec
from edge_infer_ros.payloads import CandidatePayload, DetectionPayload
from edge_infer_ros.yolo import unletterbox
from edge_infer_ros_msgs.msg import CandidateArray, DetectionArray
import numpy as np


class NmsNode(StageNode):
    """Turns ``candidates`` into final ``detections`` (the package's DetectionArray)."""

    STAGE = 'nms'
    DEFAULT_NAME = 'nms'
    DEFAULT_INPUT_MODE = 'inline'
    PARAMS = (
        ParamSpec('iou_threshold', 0.5, 'boxes of one class overlapping more than this are '
                  'suppressed', low=0.0, high=1.0),
        ParamSpec('score_threshold', 0.25, 'minimum score of a detection', low=0.0, high=1.0),
        ParamSpec('max_detections', 100, 'most detections per frame', low=1, high=10000),
        ParamSpec('class_agnostic', False, 'suppress across classes too'),
        ParamSpec('classes', [], 'class names to keep (empty: all)', list_of=str),
    )

    def create_io(self) -> None:
        """Input candidates, output detections."""
        self.add_input('candidates', CandidateArray, convert.candidates_from_msg,
                       self._on_candidates, convert.message_key)
        self.detections_out = self.add_output('detections', DetectionArray,
                                              convert.detections_to_msg, convert.envelope_key)

    def _on_candidates(self, envelope: tracing.Envelope, received_ns: int) -> None:
        start = tracing.now_ns()
        c: CandidatePayload = envelope.payload
        keep_mask = c.scores >= self.p['score_threshold']
        if self.p['classes']:
            wanted = [i for i, name in enumerate(c.class_names) if name in self.p['classes']]
            keep_mask &= np.isin(c.class_ids, wanted)
        boxes, scores, class_ids = c.boxes[keep_mask], c.scores[keep_mask], c.class_ids[keep_mask]
        keep = batched_nms(boxes, scores, class_ids, self.p['iou_threshold'],
                           self.p['max_detections'], class_agnostic=self.p['class_agnostic'])
        mapped = unletterbox(boxes[keep], c.letterbox, c.image_width, c.image_height)
        out = DetectionPayload(read_only(mapped), read_only(scores[keep]),
                               read_only(class_ids[keep]), c.class_names, c.image_width,
                               c.image_height, c.image)
        self.detections_out.publish(envelope.forward(out, self.timing(received_ns, start)))


def main(args: Optional[list[str]] = None) -> None:
    """Run the NMS node on its own."""
    run_single(NmsNode, args)


if __name__ == '__main__':
    main()

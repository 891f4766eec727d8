"""
Action stage: detections to a control command, stamped with the frame's capture time.

Being the last stage, it also publishes the frame's trace for the budget monitor, and (off by
default) a debug image with boxes and per-stage latencies, drawn on a thread of its own and
only while someone subscribes, so the control path never pays for it.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from edge_infer_ros.core.frame import Envelope, FrameTrace, now_ns
from edge_infer_ros.core.handoff import StageInput
from edge_infer_ros.core.image import ImageError
from edge_infer_ros.core.params import ParamSpec
from edge_infer_ros.core.payloads import DetectionPayload, ImagePayload
from edge_infer_ros.ros import convert
from edge_infer_ros.ros.nodes.base import run_single, StageNode
from edge_infer_ros.stages.action import ActionPolicy
from edge_infer_ros.stages.debug_view import draw_debug_image
from edge_infer_ros_msgs.msg import DetectionArray, FrameTrace as FrameTraceMsg
from geometry_msgs.msg import TwistStamped
from sensor_msgs.msg import Image

POLICY_PARAMS = ('target_classes', 'obstacle_classes', 'min_score', 'near_field_fraction',
                 'max_linear_speed', 'max_angular_speed', 'steering_gain')


class ActionNode(StageNode):
    """Publishes ``cmd_vel`` (TwistStamped) and the frame ``trace``."""

    STAGE = 'action'
    DEFAULT_NAME = 'action'
    DEFAULT_INPUT_MODE = 'inline'
    PARAMS = (
        ParamSpec('target_classes', ['ball'], 'classes to steer toward', list_of=str),
        ParamSpec('obstacle_classes', ['person'], 'classes that stop the robot when near',
                  list_of=str),
        ParamSpec('min_score', 0.4, 'detections below this score are ignored', low=0.0,
                  high=1.0),
        ParamSpec('near_field_fraction', 0.45, 'an obstacle whose box is at least this '
                  'fraction of the image height is near: stop', low=0.01, high=1.0),
        ParamSpec('max_linear_speed', 0.5, 'forward speed toward a far target, m/s', low=0.0,
                  high=10.0),
        ParamSpec('max_angular_speed', 1.0, 'largest turn rate, rad/s', low=0.0, high=10.0),
        ParamSpec('steering_gain', 1.5, 'turn rate per unit of horizontal target offset, '
                  'rad/s', low=0.0, high=100.0),
        ParamSpec('publish_trace', True, "publish each frame's trace on trace (the budget "
                  'monitor needs it)'),
        ParamSpec('debug_image', False, 'publish debug_image (boxes, labels, stage latencies) '
                  'while someone subscribes; drawn off the control path'),
    )

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.policy = self._policy()
        self.commands = 0
        self.stops = 0
        self.debug_images_drawn = 0
        self._debug_input: Optional[StageInput] = None
        self._debug_lock = threading.Lock()

    def _policy(self) -> ActionPolicy:
        return ActionPolicy(**{name: (tuple(self.p[name]) if isinstance(self.p[name], list)
                                      else self.p[name]) for name in POLICY_PARAMS})

    def parameters_changed(self, changed: dict[str, Any]) -> None:
        """Apply new policy values from the next frame on."""
        if any(name in changed for name in POLICY_PARAMS):
            self.policy = self._policy()

    def create_io(self) -> None:
        """Input detections; outputs cmd_vel, trace, debug_image."""
        self.add_input('detections', DetectionArray, convert.detections_from_msg,
                       self._on_detections, convert.message_key)
        self.cmd_out = self.add_output('cmd_vel', TwistStamped, convert.command_to_msg,
                                       convert.envelope_key)
        self.trace_out = self.add_output('trace', FrameTraceMsg, convert.trace_to_msg,
                                         convert.envelope_key)
        self.debug_pub = self.create_publisher(Image, 'debug_image', 1)
        # The debug view has its own keep-latest worker: drawing never delays a command.
        self._debug_input = StageInput('debug_image', self._draw_debug, mode='thread',
                                       depth=1, name=f'{self.get_name()}:debug',
                                       on_error=self._stage_error)

    def activate_stage(self) -> None:
        """Start the debug worker."""
        self._debug_input.start()

    def deactivate_stage(self) -> None:
        """Stop the debug worker."""
        if self._debug_input is not None:
            self._debug_input.stop()

    def cleanup_stage(self) -> None:
        """Drop the debug publisher."""
        if self._debug_input is not None:
            self._debug_input.stop()
            self._debug_input = None
        self.destroy_publisher(self.debug_pub)

    def _on_detections(self, envelope: Envelope, received_ns: int) -> None:
        start = now_ns()
        detections: DetectionPayload = envelope.payload
        command = self.policy.decide(detections)
        self.commands += 1
        self.stops += command.stop
        timing_start = start
        self.cmd_out.publish(envelope.with_payload(command))
        done = envelope.forward(detections, self.timing(received_ns, timing_start))
        if self.p['publish_trace']:
            trace = FrameTrace.of(done)
            self.trace_out.publish(envelope.with_payload(trace))
        if self.p['debug_image'] and detections.image is not None and \
                self.debug_pub.get_subscription_count() > 0:
            self._debug_input.deliver(done)

    def _draw_debug(self, envelope: Envelope, received_ns: int) -> None:
        detections: DetectionPayload = envelope.payload
        if detections.image is None:
            raise ImageError('no image to draw on')
        canvas = draw_debug_image(detections, envelope.trace, envelope.stamp_ns)
        self.debug_images_drawn += 1
        self.debug_pub.publish(convert.image_to_msg(
            envelope.with_payload(ImagePayload(canvas, 'bgr8'))))

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """Command counters and the debug view's cost counter."""
        return [('commands', str(self.commands)), ('stops', str(self.stops)),
                ('debug_images_drawn', str(self.debug_images_drawn))]


def main(args: Optional[list[str]] = None) -> None:
    """Run the action node on its own."""
    run_single(ActionNode, args)


if __name__ == '__main__':
    main()

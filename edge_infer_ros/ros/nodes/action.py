"""
Action stage: detections to a control command, stamped with the frame's capture time.

Being the last stage, it also publishes the frame's trace for the budget monitor, and (off by
default) a debug image with boxes and per-stage latencies, drawn on a thread of its own and
only while someone subscribes, so the control path never pays for it.

``cmd_vel`` is safety-relevant: every command is finite and within the speed limits (the
policy clamps it last), detections of a frame older than ``max_frame_age_s`` give a stop, and
a watchdog thread of its own (it needs no frame and no executor to run) publishes a stop every
``command_timeout_s`` while no fresh detections arrive, as a base controller behind twist_mux
expects of its inputs.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Optional

from edge_infer_ros.core.clock import JumpWatch
from edge_infer_ros.core.frame import Envelope, FrameTrace
from edge_infer_ros.core.handoff import StageInput
from edge_infer_ros.core.image import ImageError
from edge_infer_ros.core.params import ParamSpec
from edge_infer_ros.core.payloads import Command, DetectionPayload, ImagePayload
from edge_infer_ros.core.resources import config_path
from edge_infer_ros.core.validate import MAX_NAME_LENGTH
from edge_infer_ros.monitor.config import BudgetConfig, load_budget_file
from edge_infer_ros.monitor.lateness import LATE_FRAME_POLICIES, LateFrameGate
from edge_infer_ros.ros import convert, diagnostic_keys as keys, topics
from edge_infer_ros.ros.nodes.base import left_ns, StageNode
from edge_infer_ros.ros.process import run_single
from edge_infer_ros.stages.action import ActionPolicy, DriveCamera, FrameCommander
from edge_infer_ros.stages.debug_view import draw_debug_image
from edge_infer_ros_msgs.msg import (DeadlineMiss as DeadlineMissMsg, DetectionArray,
                                     FrameTrace as FrameTraceMsg)
from geometry_msgs.msg import Twist, TwistStamped
from sensor_msgs.msg import Image

POLICY_PARAMS = ('target_classes', 'obstacle_classes', 'min_score', 'near_field_fraction',
                 'max_linear_speed', 'max_angular_speed', 'steering_gain')


def _frame_id_problem(value: str) -> Optional[str]:
    """Refuse a command frame that no TF tree can hold (empty, spaces, absurd length)."""
    if not value or len(value) > MAX_NAME_LENGTH or any(c.isspace() for c in value):
        return (f'command_frame_id {value[:80]!r} must be 1 to {MAX_NAME_LENGTH} characters '
                'without spaces')
    return None


class ActionNode(StageNode):
    """Publishes ``cmd_vel`` (TwistStamped or Twist) and the frame ``trace``."""

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
        ParamSpec('command_timeout_s', 0.5, 'no fresh detections for this long: publish a stop '
                  '(zero twist), again every timeout until they come back, s', low=0.01,
                  high=60.0),
        ParamSpec('max_frame_age_s', 0.5, 'detections of a frame captured longer ago than '
                  'this give a stop instead of a command, s', low=0.001, high=60.0),
        ParamSpec('drive_camera', '', "the camera (its frames' frame_id) whose frames steer the "
                  "robot; other cameras' frames are ignored and counted ('': the only camera; "
                  'frames from a second one give stops and a WARN)'),
        ParamSpec('command_type', 'twist_stamped', 'message type of cmd_vel: twist_stamped '
                  "(ros2_control's diff_drive_controller on Jazzy and later) or twist (Humble, "
                  'most other bases)', choices=('twist_stamped', 'twist'), runtime=False),
        ParamSpec('command_frame_id', 'base_link', 'header.frame_id of every command, the '
                  "watchdog's stops included (the frame the twist is expressed in)",
                  check=_frame_id_problem),
        ParamSpec('late_frame_policy', 'stop', "a frame older than its camera's deadline when "
                  'it reaches this stage: its DeadlineMiss is published first, then stop (a zero '
                  'command), hold (no command; the base keeps its last one until its own '
                  'timeout) or publish (its command as if on time)', choices=LATE_FRAME_POLICIES),
        ParamSpec('budget_file', '', "the budget monitor's file whose deadline (per camera) "
                  "late frames are judged by ('': the shipped config/budget.yaml)",
                  runtime=False),
        ParamSpec('deadline_ms', 0.0, "end-to-end deadline, ms (0: the budget file's; a "
                  "camera's section there still wins); the launch argument deadline_ms sets "
                  "this and the monitor's", low=0.0, high=1e6),
        ParamSpec('deadline_grace_s', 1.0, 'frames captured within this long after activation '
                  'are not judged late (start-up: discovery, first allocations), s', low=0.0,
                  high=600.0),
        ParamSpec('publish_trace', True, "publish each frame's trace on trace (the budget "
                  'monitor needs it)'),
        ParamSpec('debug_image', False, 'publish debug_image (boxes, labels, stage latencies) '
                  'while someone subscribes; drawn off the control path'),
    )

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.commander = FrameCommander(self._policy(), self.p['max_frame_age_s'])
        self.drive = DriveCamera(self.p['drive_camera'])
        self.gate: Optional[LateFrameGate] = None
        self._budget = BudgetConfig()
        self.debug_images_drawn = 0
        self._debug_input: Optional[StageInput] = None
        self.watchdog_stops = 0
        self.class_warning = ''
        self._checked_names: Optional[tuple[str, ...]] = None
        self._command_lock = threading.Lock()
        self._last_fresh_ns = 0
        self._jumps = JumpWatch(self.clock)
        self._last_stop_ns = 0
        self._last_camera = ''  # camera of the latest command
        self._watchdog: Optional[threading.Thread] = None
        self._watchdog_wake = threading.Event()
        self._watchdog_quit = False

    @property
    def policy(self) -> ActionPolicy:
        """Return the steering policy in force."""
        return self.commander.policy

    @property
    def commands(self) -> int:
        """Count the commands published for frames (watchdog stops aside)."""
        return self.commander.counts.commands

    @property
    def stale_frames(self) -> int:
        """Count the frames older than max_frame_age_s (a stop instead of their command)."""
        return self.commander.counts.stale_frames

    def _policy(self) -> ActionPolicy:
        values: dict[str, Any] = {name: (tuple(self.p[name]) if isinstance(self.p[name], list)
                                         else self.p[name]) for name in POLICY_PARAMS}
        return ActionPolicy(**values)

    def parameters_changed(self, changed: dict[str, Any]) -> None:
        """Apply new policy values from the next frame on."""
        if any(name in changed for name in POLICY_PARAMS):
            self.commander.policy = self._policy()
            self._checked_names = None  # check the classes again
        self.commander.max_frame_age_s = self.p['max_frame_age_s']
        if self.gate is not None:
            self.gate.policy = self.p['late_frame_policy']
            self.gate.grace_ns = int(self.p['deadline_grace_s'] * 1e9)
            if 'deadline_ms' in changed:
                self.gate.set_config(self._with_deadline(self._budget))
        if 'drive_camera' in changed:
            with self._command_lock:
                self.drive.reset(self.p['drive_camera'])
        if 'command_timeout_s' in changed:
            self._watchdog_wake.set()  # the new timeout applies at once

    def create_io(self) -> None:
        """Input detections; outputs cmd_vel, trace, debug_image."""
        self.add_input(topics.DETECTIONS, DetectionArray, convert.detections_from_msg,
                       self._on_detections)
        if self.p['command_type'] == 'twist':
            self.cmd_out = self.add_output(topics.CMD_VEL, Twist, convert.command_to_twist)
        else:
            self.cmd_out = self.add_output(topics.CMD_VEL, TwistStamped, convert.command_to_msg)
        self.require_subscriber(self.cmd_out, 'the base controller hears nothing: check its '
                                f'topic and that it takes {self.p["command_type"]} '
                                '(command_type)')
        self.trace_out = self.add_output(topics.TRACE, FrameTraceMsg, convert.trace_to_msg)
        self.miss_out = self.add_output(topics.DEADLINE_MISS, DeadlineMissMsg,
                                        convert.deadline_miss_to_msg)
        self.debug_pub = self.create_publisher(Image, topics.DEBUG_IMAGE, 1)
        # The debug view has its own keep-latest worker: drawing never delays a command.
        self._debug_input = StageInput('debug_image', self._draw_debug, mode='thread',
                                       depth=1, name=f'{self.get_name()}:debug',
                                       on_error=self.stage_error)

    def configure_stage(self) -> None:
        """Read the budget file: the deadline each camera's frames are judged by."""
        self._budget = load_budget_file(self.p['budget_file'] or config_path('budget.yaml'))
        self.gate = LateFrameGate(self._with_deadline(self._budget), self.p['late_frame_policy'],
                                  self.p['deadline_grace_s'])

    def _with_deadline(self, config: BudgetConfig) -> BudgetConfig:
        """Return the budgets with the deadline_ms parameter applied (when set)."""
        if self.p['deadline_ms'] > 0:
            return dataclasses.replace(config, deadline_ms=float(self.p['deadline_ms']))
        return config

    def activate_stage(self) -> None:
        """Start the debug worker and the command watchdog (its clock starts now)."""
        self.gate.start(self.clock.now_ns())
        self._debug_input.start()
        self.drive.reset(self.p['drive_camera'])
        self._last_fresh_ns = self.clock.now_ns()
        self._last_stop_ns = 0
        self._jumps = JumpWatch(self.clock)
        self._watchdog_quit = False
        self._watchdog = threading.Thread(target=self._watch_commands, name='eir:cmd_watchdog',
                                          daemon=True)
        self._watchdog.start()

    def deactivate_stage(self) -> None:
        """Stop the watchdog and the debug worker."""
        self._watchdog_quit = True
        self._watchdog_wake.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=2.0)
            self._watchdog = None
        if self._debug_input is not None:
            self._debug_input.stop()

    def _watch_commands(self) -> None:
        """
        Publish a stop whenever command_timeout_s passes without fresh detections.

        It sleeps until the deadline (a new frame moves it on), so it wakes about once per
        timeout, not per frame: each wake-up of a Python thread can delay the frame threads
        when the CPU is overloaded.
        """
        while not self._watchdog_quit:
            timeout_ns = int(self.p['command_timeout_s'] * 1e9)
            now = self.clock.now_ns()
            with self._command_lock:
                if self._jumps.jumped():  # the clock jumped: the timeout starts again
                    self._last_fresh_ns, self._last_stop_ns = now, 0
                    self.gate.start(now)  # and the grace: no frame judged across the jump
                due = max(self._last_fresh_ns, self._last_stop_ns) + timeout_ns
                if now >= due:
                    self._last_stop_ns = now
                    silent_s = (now - self._last_fresh_ns) / 1e9
                    self.watchdog_stops += 1
                    self._publish_command(now, Command(
                        0.0, 0.0, True, f'no fresh detections for {silent_s:.3f} s'))
                    continue
            # At most one timeout: a clock that jumps is seen within one.
            self._watchdog_wake.wait(min(due - now, timeout_ns) / 1e9)
            self._watchdog_wake.clear()

    def _publish_command(self, stamp_ns: int, command: Command, camera: str = '',
                         seq: int = 0) -> None:
        """Publish a command in command_frame_id, stamped with its frame's capture time."""
        self.cmd_out.publish(Envelope(camera or self._last_camera, seq, stamp_ns,
                                      self.p['command_frame_id'], (), command))

    def cleanup_stage(self) -> None:
        """Drop the debug publisher."""
        if self._debug_input is not None:
            self._debug_input.stop()
            self._debug_input = None
        self.destroy_publisher(self.debug_pub)

    def _on_detections(self, envelope: Envelope, received_ns: int) -> None:
        start = self.clock.mono_ns()
        now = self.clock.now_ns()
        detections: DetectionPayload = envelope.payload
        if detections.class_names is not self._checked_names:
            self._check_classes(detections)
        with self._command_lock:
            drives, refusal = self.drive.admit(envelope.camera)
        if drives or refusal:
            command, fresh = self.commander.command(detections, envelope.stamp_ns, now)
            if refusal:
                command, fresh = Command(0.0, 0.0, True, refusal), False
            late = self._late_command(envelope, received_ns, start, now, command)
            if late is not None:
                command, fresh = late
            if command is not None:
                self._command_frame(envelope, command, fresh, now)
        self._publish_views(envelope.forward(
            detections, self.timing(received_ns, start, left_ns(envelope))))
        self.diagnostics_timing.frame_done()

    def _late_command(self, envelope: Envelope, received_ns: int, start: int, now: int,
                      command: Command) -> Optional[tuple[Optional[Command], bool]]:
        """
        Publish a late frame's DeadlineMiss before anything else of it; return its command.

        None: the frame is on time. Otherwise (the policy's command or None for hold, False:
        a late frame never counts as fresh for the watchdog).
        """
        gate = self.gate
        if gate is None or not gate.is_late(envelope.camera, envelope.stamp_ns, now):
            return None
        own = self.timing(received_ns, start, left_ns(envelope))
        miss = gate.miss(FrameTrace(envelope.camera, envelope.seq, envelope.stamp_ns,
                                    envelope.frame_id, envelope.trace + (own,)), now)
        self.miss_out.publish(Envelope(miss.camera, miss.seq, miss.stamp_ns, miss.frame_id, (),
                                       miss))
        return gate.command_for(command, miss), False

    def _command_frame(self, envelope: Envelope, command: Command, fresh: bool,
                       now: int) -> None:
        """Publish a frame's command; only a fresh frame moves the watchdog's deadline on."""
        with self._command_lock:
            self._last_camera = envelope.camera
            if fresh:
                self._last_fresh_ns = now
            self._publish_command(envelope.stamp_ns, command, envelope.camera, envelope.seq)

    def _publish_views(self, done: Envelope[DetectionPayload]) -> None:
        """Publish the frame's trace (budget monitor), and the debug view while watched."""
        if self.p['publish_trace']:
            self.trace_out.publish(done.with_payload(FrameTrace.of(done)))
        if self.p['debug_image'] and done.payload.image is not None and \
                self.debug_pub.get_subscription_count() > 0:
            self._debug_input.deliver(done)

    def _check_classes(self, detections: DetectionPayload) -> None:
        """Warn once per class list when targets or obstacles are not among the model's."""
        self._checked_names = detections.class_names
        if not detections.class_names_complete:
            return  # from DDS: only the classes detected in that frame are known
        missing = self.policy.unknown_classes(detections.class_names)
        self.class_warning = (
            f'classes {", ".join(missing)} (target_classes/obstacle_classes) are not among the '
            f'model\'s classes {", ".join(detections.class_names[:20])}: nothing will match '
            'them; set target_classes/obstacle_classes or the class_names parameter of the '
            'detector') if missing else ''
        if missing:
            self.get_logger().warning(self.class_warning)

    def stage_warning(self) -> str:
        """WARN while the watchdog publishes stops, else while classes do not match."""
        silent_s = max(0, self.clock.now_ns() - self._last_fresh_ns) / 1e9
        drive = self.drive.ambiguity() or self.drive.missing()
        if self.active and silent_s > self.p['command_timeout_s']:
            return f'watchdog: no fresh detections for {silent_s:.1f} s, publishing stops' + (
                f' ({drive})' if drive else '')
        return drive or self.class_warning

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
        counts = self.commander.counts
        return [(keys.COMMANDS, str(counts.commands)), ('stops', str(counts.stops)),
                ('watchdog_stops', str(self.watchdog_stops)),
                ('stale_frames', str(counts.stale_frames)),
                ('drive_camera', self.drive.drive_camera or '(the only camera)'),
                ('other_camera_frames', str(self.drive.other_camera_frames)),
                ('no_drive_camera_stops', str(self.drive.ambiguous_frames)),
                ('ignored_detections', str(counts.ignored_detections)),
                ('debug_images_drawn', str(self.debug_images_drawn))] + self._lateness_values()

    def _lateness_values(self) -> list[tuple[str, str]]:
        if self.gate is None:
            return []
        counts = self.gate.counts
        return [('late_frame_policy', self.gate.policy), ('late_frames', str(counts.late_frames)),
                ('late_frames_stopped', str(counts.stopped)),
                ('late_frames_held', str(counts.held)),
                ('late_frames_published', str(counts.published_late)),
                ('frames_in_deadline_grace', str(counts.not_judged))]


def main(args: Optional[list[str]] = None) -> None:
    """Run the action node on its own."""
    run_single(ActionNode, args)


if __name__ == '__main__':
    main()

"""
Budget monitor: per-stage latency budgets, /diagnostics, and a deadline-miss event per late frame.

It follows the traces the last stage publishes (by reference in the same process, over DDS
from anywhere else), keeps sliding windows per camera and stage (service time, queue wait,
transport, end to end), and:

* publishes ``edge_infer_ros_msgs/DeadlineMiss`` on ``deadline_miss`` at once for every frame
  later than the deadline, naming the stage most over its budget (controllers react in the
  same cycle, not at the diagnostics rate);
* publishes ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` every period: one status
  per stage and per camera path, OK / WARN / ERROR / STALE, values with units (the conventions
  of diagnostic_updater), STALE/ERROR when frames stop arriving.

Its verdicts take about a millisecond of Python, which on the executor's thread would hold
the GIL against a frame in flight; as every stage's status, they go out once a period right
after the next trace while traces flow, i.e. just after a frame ended, in the pipeline's idle
time, and from the period's own thread when traces stop (core/between_frames.py).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from edge_infer_ros.core.clock import JumpWatch
from edge_infer_ros.core.frame import Envelope, FrameTrace
from edge_infer_ros.core.health import Level
from edge_infer_ros.core.params import ParamSpec
from edge_infer_ros.core.validate import check_stamp, check_trace, MAX_NAME_LENGTH
from edge_infer_ros.monitor.config import (BudgetConfig, CAMERAS_PREFIX, END_TO_END,
                                           MAX_CAMERAS_RANGE, MAX_STAGES_RANGE)
from edge_infer_ros.monitor.tracker import BudgetTracker
from edge_infer_ros.monitor.verdicts import DeadlineMiss
from edge_infer_ros.ros import convert, topics
from edge_infer_ros.ros.compat import parameter_overrides
from edge_infer_ros.ros.node_params import COMMON_PARAMS
from edge_infer_ros.ros.nodes.base import StageNode
from edge_infer_ros.ros.process import run_single
from edge_infer_ros_msgs.msg import DeadlineMiss as DeadlineMissMsg, FrameTrace as FrameTraceMsg

_DESCRIPTIONS = {
    'deadline_ms': 'end-to-end deadline: capture stamp to the end of the last stage, ms',
    'budget_ms.ingest': 'capture stamp to receipt by the first stage, ms',
    'budget_ms.transport': 'sum of the hops between stages after ingest, ms',
    'budget_ms.slack': 'reserve of the deadline given to no stage, ms',
    'window_size': 'samples per window the percentiles are taken over; refused when '
                   'window_size x max_cameras x (3 + 4 x max_stages) x 16 bytes exceeds '
                   '256 MiB (the memory ceiling of the windows)',
    'window_max_age_s': 'samples older than this leave the windows, s (0: no limit)',
    'warn_percentile': "percentile of a stage's queue wait + service compared with its "
                       'budget',
    'miss_rate_error': 'fraction of frames over the deadline above which the path is ERROR',
    'stale_timeout_s': 'no trace for this long: stages STALE, path ERROR, s',
    'min_samples': 'fewer samples: no verdict from percentiles yet',
    'max_cameras': 'most cameras followed; a trace of one more is refused (counted) unless '
                   'a camera silent for stale_timeout_s makes room',
    'max_stages': 'most stages followed per camera; traces needing more are refused (counted)',
    'entry_timeout_s': 'cameras and stages missing from the traces this long are forgotten, '
                       's (>= stale_timeout_s)',
}
#: Parameters that accept 0 (the other floats must be > 0: their range starts above it).
_ZERO_ALLOWED = frozenset({'budget_ms.slack', 'window_max_age_s', 'miss_rate_error'})
#: Smallest value of a parameter that must be > 0.
_POSITIVE_LOW = 0.001
_COMMON_NAMES = {spec.name for spec in COMMON_PARAMS}


#: Most per-camera parameters a budget file may set (64 cameras, a deadline and 7 budgets each).
MAX_CAMERA_PARAMETERS = 512


#: Frames whose miss another node published, remembered to publish each miss once.
REPORTED_KEYS = 256


#: Shortest time between two publications made because a level changed (s): a flapping
#: status cannot flood /diagnostics.
LEVEL_CHANGE_PERIOD_S = 0.2


#: Traces waiting for the monitor: every trace counts, so the queue is deep and pinned (the
#: stage-wide queue_depth / input_mode parameters are for frame inputs).
TRACE_QUEUE_DEPTH = 1000


def budget_param_specs() -> tuple[ParamSpec, ...]:
    """ROS parameters of the monitor, from the defaults of BudgetConfig (one source of truth)."""
    specs = []
    for name, default in BudgetConfig().to_mapping().items():
        if name in _COMMON_NAMES:
            continue
        description = _DESCRIPTIONS.get(
            name, f'budget of the {name.split(".", 1)[-1]} stage: queue wait + service, ms')
        if name == 'warn_percentile':
            specs.append(ParamSpec(name, default, description, low=1.0, high=100.0))
        elif name == 'miss_rate_error':
            specs.append(ParamSpec(name, default, description, low=0.0, high=1.0))
        elif name in ('max_cameras', 'max_stages'):
            bounds = MAX_CAMERAS_RANGE if name == 'max_cameras' else MAX_STAGES_RANGE
            specs.append(ParamSpec(name, default, description, low=bounds[0], high=bounds[1]))
        elif name == 'min_samples':
            specs.append(ParamSpec(name, default, description, low=0, high=1_000_000))
        elif isinstance(default, int):
            specs.append(ParamSpec(name, default, description, low=1, high=1_000_000))
        else:
            low = 0.0 if name in _ZERO_ALLOWED else _POSITIVE_LOW
            specs.append(ParamSpec(name, float(default), description, low=low, high=1e6))
    return tuple(specs)


class BudgetMonitorNode(StageNode):
    """Follows frame traces against the latency budget."""

    STAGE = 'budget_monitor'
    DEFAULT_NAME = 'budget_monitor'
    PARAMS = budget_param_specs() + (
        ParamSpec('deadline_grace_s', 1.0, 'traces of frames captured within this long after '
                  'activation are counted but not judged (start-up: discovery, first '
                  'allocations), s', low=0.0, high=600.0),
    )

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.tracker = BudgetTracker(self._config_from_params(self.p))
        self._tracker_lock = threading.Lock()
        self._jumps = JumpWatch(self.clock)
        self.trace_hooks: list[Callable[[FrameTrace], None]] = []
        self.miss_hooks: list[Callable[[DeadlineMiss], None]] = []
        self.traces_seen = 0
        self.last_trace_ns = 0  # receipt time of the newest trace (0: none yet)
        self.misses_published = 0
        self.config_warnings: list[str] = []
        #: Frames whose DeadlineMiss another node (the action stage) already published:
        #: (stamp, camera), the most recent REPORTED_KEYS of them.
        self._reported: collections.OrderedDict[tuple[int, str], None] = \
            collections.OrderedDict()
        self.misses_reported_upstream = 0
        self.traces_in_grace = 0
        self._judge_from_ns = 0
        self._published_levels: dict[str, bytes] = {}
        self._last_change_publish = 0.0

    def instance_specs(self) -> tuple[ParamSpec, ...]:
        """Declare the budget file's ``cameras`` sections: a deadline and budgets per camera."""
        given = parameter_overrides(self, CAMERAS_PREFIX)
        if len(given) > MAX_CAMERA_PARAMETERS:
            raise ValueError(f'the cameras sections set {len(given)} parameters, at most '
                             f'{MAX_CAMERA_PARAMETERS}')
        return tuple(ParamSpec(name, float(value) if isinstance(value, (int, float)) and
                               not isinstance(value, bool) else 0.0,
                               f'{name.split(".", 2)[2]} of camera {name.split(".")[1]}, ms',
                               low=_POSITIVE_LOW, high=1e6)
                     for name, value in sorted(given.items()))

    def _config_from_params(self, values: dict[str, Any]) -> BudgetConfig:
        mapping = {k: v for k, v in values.items() if k in self.param_specs}
        return BudgetConfig.from_mapping(mapping)

    def check_parameters(self, updates: dict[str, Any]) -> Optional[str]:
        """Budgets must stay a valid configuration as a whole."""
        try:
            self._config_from_params({**self.p, **updates})
        except ValueError as error:
            return str(error)
        return None

    def parameters_changed(self, changed: dict[str, Any]) -> None:
        """Judge the very next frame by the new budgets and thresholds."""
        config = self._config_from_params(self.p)
        with self._tracker_lock:
            self.tracker.set_config(config)
        self._warn_about(config)

    def configure_stage(self) -> None:
        """Say at once what is doubtful in the budgets (they are valid, or configure failed)."""
        self._warn_about(self.tracker.config)

    def _warn_about(self, config: BudgetConfig) -> None:
        self.config_warnings = config.consistency_warnings()
        for warning in self.config_warnings:
            self.get_logger().warning(f'budget configuration: {warning}')

    def create_io(self) -> None:
        """Input trace (every trace counts: a deep queue of its own), output deadline_miss."""
        self.add_input(topics.TRACE, FrameTraceMsg, convert.trace_from_msg, self._on_trace,
                       mode='thread', depth=TRACE_QUEUE_DEPTH)
        self.miss_out = self.add_output(topics.DEADLINE_MISS, DeadlineMissMsg,
                                        convert.deadline_miss_to_msg)
        # The action stage publishes a late frame's miss before its command; this input
        # remembers which, so each miss is published once. Inline: in one process it is
        # remembered before the frame's trace can arrive.
        self.add_input(topics.DEADLINE_MISS, DeadlineMissMsg, _reported_from_msg,
                       self._on_reported_miss, mode='inline', depth=1)

    def activate_stage(self) -> None:
        """Judge frames captured deadline_grace_s from now on."""
        self._judge_from_ns = self.clock.now_ns() + int(self.p['deadline_grace_s'] * 1e9)

    def _on_reported_miss(self, envelope: Envelope, received_ns: int) -> None:
        with self._tracker_lock:
            self._reported[(envelope.stamp_ns, envelope.camera)] = None
            while len(self._reported) > REPORTED_KEYS:
                self._reported.popitem(last=False)

    def _on_trace(self, envelope: Envelope, received_ns: int) -> None:
        trace: FrameTrace = envelope.payload
        now = self._now_ns()  # the node's ROS clock: sim, bag and wall time alike
        # In-process traces too: no zero, future or out-of-order time enters the windows.
        check_stamp(trace.stamp_ns, now, 'trace stamp')
        check_trace(trace.stamp_ns, trace.stages, now)
        if trace.stamp_ns < self._judge_from_ns:
            self.traces_in_grace += 1
            self._count_trace(trace, now)
            self._trace_done()
            return
        with self._tracker_lock:
            miss = self.tracker.observe(trace, now)
            reported = miss is not None and (miss.stamp_ns, miss.camera) in self._reported
        self._count_trace(trace, now)
        if miss is not None:
            if reported:
                self.misses_reported_upstream += 1
                for hook in self.miss_hooks:
                    hook(miss)
            else:
                self._publish_miss(miss)
            self._publish_if_first_miss(miss.camera)
        self._trace_done()

    def _now_ns(self) -> int:
        """Read the node's clock; restart the windows when it jumped since the last reading."""
        now = self.clock.now_ns()
        if self._jumps.jumped():
            with self._tracker_lock:
                self.tracker.clock_jumped(now)
            self.last_trace_ns = now
            self._judge_from_ns = now + int(self.p['deadline_grace_s'] * 1e9)
            self.get_logger().warning(f'{self.clock.last_jump}: budget windows restarted')
        return now

    def _count_trace(self, trace: FrameTrace, received_ns: int) -> None:
        """Count a trace the tracker took, and hand it to the main job's hooks."""
        self.traces_seen += 1
        self.last_trace_ns = received_ns
        for hook in self.trace_hooks:
            hook(trace)

    def _trace_done(self) -> None:
        """Note a trace handled: verdicts the period marked due go out now, after a frame."""
        self.diagnostics_timing.frame_done()

    @property
    def diagnostics_after_trace(self) -> int:
        """Publications of the period that waited for a trace to end."""
        return self.diagnostics_timing.after_frame

    def _publish_miss(self, miss: DeadlineMiss) -> None:
        """Publish a deadline miss at once (and tell the main job's hooks)."""
        self.misses_published += 1
        self.miss_out.publish(Envelope(miss.camera, miss.seq, miss.stamp_ns, miss.frame_id, (),
                                       miss))
        for hook in self.miss_hooks:
            hook(miss)

    def budget_statuses(self, at_ns: Optional[int] = None) -> list[DiagnosticStatus]:
        """Return the monitor's verdicts as DiagnosticStatus messages."""
        at = at_ns if at_ns is not None else self._now_ns()
        with self._tracker_lock:
            verdicts = self.tracker.statuses(at)
        statuses = []
        for verdict in verdicts:
            status = DiagnosticStatus(level=verdict.level.as_byte(),
                                      name=f'{self._fqn}: {verdict.camera}/{verdict.name}',
                                      message=verdict.message, hardware_id=self.hardware_id)
            status.values = [KeyValue(key=k, value=v) for k, v in verdict.values]
            statuses.append(status)
        return statuses + self._silent_camera_statuses()

    def _silent_camera_statuses(self) -> list[DiagnosticStatus]:
        """WARN for each camera the budget file names that sent nothing past the grace."""
        waited_s = time.monotonic() - self.ports.activated_s
        if waited_s < self.p['startup_grace_s']:
            return []
        with self._tracker_lock:
            silent = self.tracker.silent_configured_cameras()
        return [DiagnosticStatus(level=Level.WARN.as_byte(),
                                 name=f'{self._fqn}: {camera}/end_to_end',
                                 hardware_id=self.hardware_id,
                                 message=f'no frame from camera {camera!r} (named in the budget '
                                 f'file) in {waited_s:.0f} s: check its driver, topic and '
                                 'frame_id')
                for camera in silent]

    def summary(self, at_ns: Optional[int] = None) -> dict[str, Any]:
        """
        Return the latency report (the main job prints and writes it), judged at ``at_ns``.

        A run that has ended judges at its last trace (``at_ns=last_trace_ns``): judged later,
        every stage would be STALE only because the run is over.
        """
        at = at_ns if at_ns is not None else self._now_ns()
        with self._tracker_lock:
            return self.tracker.summary(at)

    def publish_diagnostics(self) -> None:
        """Own status plus one status per stage and camera path."""
        self._publish_diagnostics_now()

    def _publish_if_first_miss(self, camera: str) -> None:
        """Publish at once when a camera's path was last published OK (at most 5 per s)."""
        name = f'{self._fqn}: {camera}/{END_TO_END}'
        if self._published_levels.get(name, Level.OK.as_byte()) != Level.OK.as_byte():
            return
        now = time.monotonic()
        if now - self._last_change_publish < LEVEL_CHANGE_PERIOD_S:
            return
        self._last_change_publish = now
        self._publish_diagnostics_now()

    def _publish_diagnostics_now(self) -> None:
        array_msg = DiagnosticArray()
        array_msg.header.stamp = self.get_clock().now().to_msg()
        array_msg.status = [self.stage_status()] + (self.budget_statuses() if self.active
                                                    else [])
        self._published_levels = {s.name: s.level for s in array_msg.status}
        self._diag_pub.publish(array_msg)

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """Counters of the monitor itself."""
        values = [('traces_seen', str(self.traces_seen)),
                  ('deadline_misses_published', str(self.misses_published)),
                  ('deadline_misses_published_by_action', str(self.misses_reported_upstream)),
                  ('traces_in_deadline_grace', str(self.traces_in_grace)),
                  ('diagnostics_after_trace', str(self.diagnostics_after_trace))]
        values += [(f'config_warning_{i}', w) for i, w in enumerate(self.config_warnings)]
        return values


def _reported_from_msg(msg: DeadlineMissMsg) -> Envelope:
    """Keep only which frame a DeadlineMiss message reports (stamp and camera)."""
    stamp, camera = convert.deadline_miss_key(msg)
    return Envelope(camera[:MAX_NAME_LENGTH], 0, stamp, '', (), None)


def main(args: Optional[list[str]] = None) -> None:
    """Run the budget monitor on its own (for example on another host)."""
    run_single(BudgetMonitorNode, args)


if __name__ == '__main__':
    main()

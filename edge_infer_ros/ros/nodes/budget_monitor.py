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
the GIL against a frame in flight; while traces flow, the timer only marks them due and the
monitor's own thread publishes them right after the next trace, i.e. just after a frame
ended, in the pipeline's idle time. When traces stop, the timer publishes them itself.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from edge_infer_ros.core.frame import Envelope, FrameTrace, now_ns
from edge_infer_ros.core.params import ParamSpec
from edge_infer_ros.core.validate import check_stamp, check_trace
from edge_infer_ros.monitor.config import BudgetConfig, MAX_CAMERAS_RANGE, MAX_STAGES_RANGE
from edge_infer_ros.monitor.tracker import BudgetTracker
from edge_infer_ros.monitor.verdicts import DeadlineMiss
from edge_infer_ros.ros import convert, topics
from edge_infer_ros.ros.nodes.base import COMMON_PARAMS, run_single, StageNode
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
    PARAMS = budget_param_specs()

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.tracker = BudgetTracker(self._config_from_params(self.p))
        self._tracker_lock = threading.Lock()
        self.trace_hooks: list[Callable[[FrameTrace], None]] = []
        self.miss_hooks: list[Callable[[DeadlineMiss], None]] = []
        self.traces_seen = 0
        self.last_trace_ns = 0  # receipt time of the newest trace (0: none yet)
        self.misses_published = 0
        self.config_warnings: list[str] = []
        self.diagnostics_after_trace = 0
        self._diagnostics_due = False

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
        self.miss_out = self.add_output(topics.DEADLINE_MISS, DeadlineMissMsg, _miss_to_msg)

    def _on_trace(self, envelope: Envelope, received_ns: int) -> None:
        trace: FrameTrace = envelope.payload
        # In-process traces too: no zero, future or out-of-order time enters the windows.
        check_stamp(trace.stamp_ns, received_ns, 'trace stamp')
        check_trace(trace.stamp_ns, trace.stages, received_ns)
        with self._tracker_lock:
            miss = self.tracker.observe(trace, received_ns)
        self._count_trace(trace, received_ns)
        if miss is not None:
            self._publish_miss(miss)
        if self._diagnostics_due:  # marked by the timer: now is the pipeline's idle time
            self._publish_diagnostics_after_trace()

    def _count_trace(self, trace: FrameTrace, received_ns: int) -> None:
        """Count a trace the tracker took, and hand it to the main job's hooks."""
        self.traces_seen += 1
        self.last_trace_ns = received_ns
        for hook in self.trace_hooks:
            hook(trace)

    def _publish_diagnostics_after_trace(self) -> None:
        """Publish the diagnostics the timer marked due, right after a frame ended."""
        self._diagnostics_due = False
        self.diagnostics_after_trace += 1
        self._publish_diagnostics_now()

    def _publish_miss(self, miss: DeadlineMiss) -> None:
        """Publish a deadline miss at once (and tell the main job's hooks)."""
        self.misses_published += 1
        self.miss_out.publish(Envelope(miss.camera, miss.seq, miss.stamp_ns, miss.frame_id, (),
                                       miss))
        for hook in self.miss_hooks:
            hook(miss)

    def budget_statuses(self, at_ns: Optional[int] = None) -> list[DiagnosticStatus]:
        """Return the monitor's verdicts as DiagnosticStatus messages."""
        with self._tracker_lock:
            verdicts = self.tracker.statuses(at_ns if at_ns is not None else now_ns())
        statuses = []
        for verdict in verdicts:
            status = DiagnosticStatus(level=verdict.level.as_byte(),
                                      name=f'{self.get_name()}: {verdict.camera}/{verdict.name}',
                                      message=verdict.message, hardware_id=self.p['hardware_id'])
            status.values = [KeyValue(key=k, value=v) for k, v in verdict.values]
            statuses.append(status)
        return statuses

    def summary(self, at_ns: Optional[int] = None) -> dict[str, Any]:
        """
        Return the latency report (the main job prints and writes it), judged at ``at_ns``.

        A run that has ended judges at its last trace (``at_ns=last_trace_ns``): judged later,
        every stage would be STALE only because the run is over.
        """
        with self._tracker_lock:
            return self.tracker.summary(at_ns if at_ns is not None else now_ns())

    def publish_diagnostics(self) -> None:
        """Own status plus one status per stage and camera path (after the next trace if due)."""
        period_ns = self.p['diagnostics_period_s'] * 1e9
        if self.active and now_ns() - self.last_trace_ns < 0.5 * period_ns:
            self._diagnostics_due = True  # traces flow: published after the next one
            return
        self._diagnostics_due = False
        self._publish_diagnostics_now()

    def _publish_diagnostics_now(self) -> None:
        array_msg = DiagnosticArray()
        array_msg.header.stamp = self.get_clock().now().to_msg()
        array_msg.status = [self.stage_status()] + (self.budget_statuses() if self.active
                                                    else [])
        self._diag_pub.publish(array_msg)

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """Counters of the monitor itself."""
        values = [('traces_seen', str(self.traces_seen)),
                  ('deadline_misses_published', str(self.misses_published)),
                  ('diagnostics_after_trace', str(self.diagnostics_after_trace))]
        values += [(f'config_warning_{i}', w) for i, w in enumerate(self.config_warnings)]
        return values


def _miss_to_msg(envelope: Envelope) -> DeadlineMissMsg:
    miss: DeadlineMiss = envelope.payload
    msg = DeadlineMissMsg(camera=miss.camera, seq=miss.seq, deadline_ms=miss.deadline_ms,
                          latency_ms=miss.latency_ms, overrun_ms=miss.overrun_ms,
                          worst_stage=miss.worst_stage, worst_component=miss.worst_component,
                          worst_stage_ms=miss.worst_stage_ms,
                          worst_stage_budget_ms=miss.worst_stage_budget_ms)
    convert.ns_to_stamp(miss.stamp_ns, msg.header.stamp)
    msg.header.frame_id = miss.frame_id
    return msg


def main(args: Optional[list[str]] = None) -> None:
    """Run the budget monitor on its own (for example on another host)."""
    run_single(BudgetMonitorNode, args)


if __name__ == '__main__':
    main()

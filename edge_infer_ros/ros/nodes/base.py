"""
The base of every stage node: lifecycle, its inputs and outputs, faults and status assembly.

The ports (ros/ports.py: transports, loss counts, wiring), the parameter glue
(ros/node_params.py) and the logic in core/ are elsewhere.

A stage node is a managed (lifecycle) node: it allocates on *configure* (model, buffers,
publishers, subscriptions), processes frames only while *active*, and frees everything on
*cleanup*. With ``autostart`` (the default) the container, the runner and ``main()`` drive it
to active at once, so it also behaves like a plain node.

Frames reach a stage by reference from stages in the same process, by a same-host transport
and as ROS messages from anywhere else; see :mod:`edge_infer_ros.ros.ports`. The executor
serves parameters, lifecycle services and other processes' messages; status runs between frames.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Hashable, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from edge_infer_ros.core.between_frames import BetweenFrames
from edge_infer_ros.core.clock import NodeClock
from edge_infer_ros.core.frame import Envelope, StageTiming
from edge_infer_ros.core.handoff import LocalBus, StageInput, StagePublisher
from edge_infer_ros.core.health import HealthSources, stage_health
from edge_infer_ros.core.sequence import SequenceTracker
from edge_infer_ros.core.validate import check_envelope, InputRefused, MAX_DETECTIONS, REASONS
from edge_infer_ros.ros import convert, topics
from edge_infer_ros.ros.compat import ros_time_reader
from edge_infer_ros.ros.node_params import DeclaredParameters, hardware_id_for
from edge_infer_ros.ros.nodes.name_clash import NameClashCheck
from edge_infer_ros.ros.ports import frames_lost_in_transport, InputPort, OutputPort, Ports
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile


#: Shortest time between two checks for a changed level outside the diagnostics period (s): a
#: status that flaps cannot flood /diagnostics (at most five extra publications a second).
LEVEL_CHANGE_PERIOD_S = 0.2


def left_ns(envelope: Envelope[Any]) -> int:
    """Return when a frame left its last stage (its stamp before the first stage)."""
    return envelope.trace[-1].end_ns if envelope.trace else envelope.stamp_ns


class StageNode(NameClashCheck, DeclaredParameters):
    """A pipeline stage as a managed node; subclasses implement the stage hooks."""

    #: Stage kind written into frame traces (preprocess, detector, nms, action, ...).
    STAGE = 'stage'
    #: Default node name.
    DEFAULT_NAME = 'stage'

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        # State first: destroy_node() must work even if construction fails half-way.
        self._active = False
        self._configured = False
        self.ports = Ports(self)
        super().__init__(node_name or self.DEFAULT_NAME, **kwargs)
        #: This node's clock: ROS time (use_sim_time honoured) for stamps and ages, monotonic
        #: for durations (core/clock.py); each node its own, several share a process.
        self.clock = NodeClock(ros_time_reader(self.get_clock()))
        try:
            self._declare_parameters()
        except BaseException:
            super().destroy_node()  # a refused parameter must not leave a node in the graph
            raise
        self.bus = LocalBus.for_context(self.context)
        self.last_error = ''
        self.fault = ''  # a lasting fault (e.g. backend fallback) reported in diagnostics
        self._last_error_ns = 0
        #: refused inputs per reason of core.validate (a fixed set of keys: bounded)
        self.refusals: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._last_level: Optional[bytes] = None  # of the status computed last
        self._last_change_check = 0.0
        self._fqn = self.get_fully_qualified_name()
        self._diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.diagnostics_timing = BetweenFrames(
            self.publish_diagnostics, self.p['diagnostics_period_s'], f'{self.get_name()}:diag',
            on_error=lambda e: self.get_logger().error(f'diagnostics failed: {e!r}'))
        self._diag_start = self.create_timer(0.0, self._start_diagnostics)  # once built

    def _start_diagnostics(self) -> None:
        """Start the diagnostics period once an executor runs the node (construction done)."""
        self._diag_start.cancel()
        if not getattr(self, '_destroyed', False):
            self.diagnostics_timing.start()

    # -- parameters -------------------------------------------------------------------------
    def settings_changed(self, changed: dict[str, Any]) -> None:
        """Apply changed settings every stage shares (queues, the diagnostics period)."""
        if 'queue_depth' in changed or 'input_mode' in changed:
            for stage_input in self.inputs:
                stage_input.apply_settings(self.p['input_mode'], self.p['queue_depth'])
        if 'diagnostics_period_s' in changed:
            self.diagnostics_timing.period_s = self.p['diagnostics_period_s']  # next wait on

    # -- inputs and outputs -----------------------------------------------------------------
    def add_input(self, topic: str, msg_type: Any, from_msg: Callable[[Any], Envelope],
                  callback: Callable[[Envelope, int], None],
                  key_of: Callable[[Any], Hashable] = convert.message_key,
                  mode: Optional[str] = None, depth: Optional[int] = None,
                  qos: Optional[QoSProfile] = None) -> StageInput:
        """
        Subscribe a stage callback to a topic, locally by reference and through DDS.

        ``key_of`` names the frame a message belongs to (see :class:`InputPort`); the default
        (header stamp and frame_id) fits every message with a header. An explicit ``mode`` or
        ``depth`` pins the input: the stage-wide ``input_mode`` and ``queue_depth`` parameters
        then leave it alone.
        """
        return self.ports.add_input(topic, msg_type, from_msg, callback, key_of, mode, depth,
                                    qos).stage_input

    def require_subscriber(self, output: OutputPort, hint: str) -> None:
        """Mark an output the robot needs: no subscriber past startup_grace_s is a WARN."""
        self.ports.require_subscriber(output, hint)

    def gate_frame(self, envelope: Envelope, local: bool) -> None:
        """
        Check a frame that skipped message conversion (shared memory, in-process).

        A frame by reference may hold more items than the stage takes from outside (NMS keeps
        the best ``max_candidates`` of its own detector's output): capped at the hard limit.
        Its tensor is not scanned for NaN/inf (this process's preprocessor made it from
        pixels; a pass over the tensor would cost the hot path as much as inference's input).
        """
        check_envelope(envelope, self.clock.now_ns(),
                       MAX_DETECTIONS if local else self.max_input_items(), scan_tensor=not local)

    def max_input_items(self) -> int:
        """Most candidates an input frame may hold (NMS: its ``max_candidates``)."""
        return MAX_DETECTIONS

    def add_output(self, topic: str, msg_type: Any, to_msg: Callable[[Envelope], Any],
                   key_of: Callable[[Envelope], Hashable] = convert.envelope_key,
                   qos: Optional[QoSProfile] = None) -> OutputPort:
        """
        Create a publisher that hands frames on by reference and builds messages on demand.

        ``key_of`` names a frame as its message's ``key_of`` at the inputs will (the default:
        capture stamp and frame_id, as :func:`convert.message_key` reads them from a header).
        Frames go by the same-host transport too where ``transport.same_host`` names one.
        """
        return self.ports.add_output(topic, msg_type, to_msg, key_of, qos)

    @property
    def inputs(self) -> list[StageInput]:
        """List this stage's inputs, for counters and tests."""
        return [p.stage_input for p in self.ports.inputs]

    @property
    def input_ports(self) -> list[InputPort]:
        """List this stage's input ports (their transports and loss counts)."""
        return list(self.ports.inputs)

    @property
    def outputs(self) -> list[StagePublisher]:
        """List this stage's outputs, for counters and tests."""
        return list(self.ports.outputs)

    @property
    def transport_loss(self) -> dict[str, SequenceTracker]:
        """Per input topic: gaps in the publishers' sequence numbers (frames DDS lost)."""
        return {p.topic: p.loss for p in self.ports.inputs}

    def timing(self, received_ns: int, start_ns: int, after_ns: int = 0) -> StageTiming:
        """Return this stage's timing record for a frame that ends now (monotonic readings in)."""
        return self.clock.timing(self.STAGE, self._fqn, received_ns, start_ns, after_ns)

    def emit(self, output: StagePublisher, envelope: Envelope[Any], payload: Any,
             received_ns: int, start_ns: int, loan: Any = None) -> Envelope[Any]:
        """
        Add this stage's timing to the frame, publish it with its new payload, return it.

        ``loan``: the shared-memory sample the payload's array was written into, if any
        (``output.loaned()``).
        """
        done = envelope.forward(payload, self.timing(received_ns, start_ns, left_ns(envelope)))
        output.publish(done, loan)
        self.diagnostics_timing.frame_done()  # the stages downstream ran inline by now
        return done

    # -- faults -----------------------------------------------------------------------------
    def stage_error(self, error: BaseException, envelope: Optional[Envelope],
                    what: str = '') -> None:
        """Record a failed or refused frame: the reason, its time, the refusal count."""
        frame = f' (frame {envelope.camera}#{envelope.seq})' if envelope is not None else ''
        self.last_error = f'{what or self.STAGE + " failed"}{frame}: ' \
                          f'{type(error).__name__}: {error}'
        self._last_error_ns = self.clock.now_ns()
        if isinstance(error, InputRefused):
            self.refusals[error.reason] += 1
        self.get_logger().error(self.last_error, throttle_duration_sec=1.0)
        self.publish_if_level_changed()

    def publish_if_level_changed(self) -> None:
        """Publish the status at once when its level changed (checked at most 5 times a s)."""
        if (now := time.monotonic()) - self._last_change_check < LEVEL_CHANGE_PERIOD_S or \
                getattr(self, '_destroyed', False):
            return
        self._last_change_check = now
        before = self._last_level

        def publish_if_changed() -> None:  # one status at a time, whichever thread
            if self.stage_status().level != before:
                self.publish_diagnostics()
        self.diagnostics_timing.run_exclusive(publish_if_changed)

    def record_error(self, text: str) -> None:
        """Record an error with its time: health is ERROR while errors are recent."""
        self.last_error = text
        self._last_error_ns = self.clock.now_ns()

    def error_count(self) -> int:
        """Frames this stage failed on (dropped and counted)."""
        return sum(i.stats.errors for i in self.inputs)

    # -- lifecycle --------------------------------------------------------------------------
    _unknown_note = ''  # the WARN of parameters given but unknown (set at configure)

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Allocate: publishers, subscriptions, then the stage's own resources."""
        unknown = self.unknown_parameters()
        self._unknown_note = ''
        if unknown:  # rclpy ignores them without a word: a typo would silently keep a default
            self._unknown_note = (f'unknown parameter(s) ignored: {", ".join(unknown)[:200]} '
                                  '(not parameters of this node: a typo?)')
            self.get_logger().warning(self._unknown_note)
        try:
            with self.diagnostics_timing.held():  # no status of half-built ports
                self.create_io()
                self.configure_stage()
        except Exception as error:  # noqa: B902 - reported, and the transition fails cleanly
            self.record_error(f'configure failed: {type(error).__name__}: {error}')
            self.get_logger().error(self.last_error)
            self.ports.close()
            self.publish_diagnostics()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Start processing frames."""
        for stage_input in self.inputs:
            stage_input.start()
        try:
            self.activate_stage()
        except Exception as error:  # noqa: B902
            self.record_error(f'activate failed: {type(error).__name__}: {error}')
            self.get_logger().error(self.last_error)
            for stage_input in self.inputs:
                stage_input.stop()
            return TransitionCallbackReturn.FAILURE
        self._active = True
        self.ports.activated()
        self.publish_if_level_changed()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Stop processing frames (queued ones are dropped and counted)."""
        self._active = False
        self.deactivate_stage()
        for stage_input in self.inputs:
            stage_input.stop()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Free everything configure allocated."""
        with self.diagnostics_timing.held():
            self.ports.close()
            self.cleanup_stage()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        """Stop and free, whatever the state."""
        if self._active:
            self.on_deactivate(state)
        if self._configured:
            self.on_cleanup(state)
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        """Free what we can and go back to unconfigured."""
        self.on_shutdown(state)
        return TransitionCallbackReturn.SUCCESS

    @property
    def active(self) -> bool:
        """Tell whether the stage processes frames."""
        return self._active

    @property
    def configured(self) -> bool:
        """Tell whether the model is loaded and the buffers allocated (after configure)."""
        return self._configured

    def start(self) -> bool:
        """Configure and activate (what ``autostart`` does); True when active."""
        if not self._configured:
            self.trigger_configure()
        if self._configured and not self._active:
            self.trigger_activate()
        return self._active

    def stop(self) -> None:
        """Deactivate and clean up (release everything)."""
        if self._active:
            self.trigger_deactivate()
        if self._configured:
            self.trigger_cleanup()

    # -- stage hooks ------------------------------------------------------------------------
    def create_io(self) -> None:
        """Create inputs and outputs with add_input()/add_output()."""

    def configure_stage(self) -> None:
        """Allocate the stage's resources (model, buffers); raise to fail configure."""

    def activate_stage(self) -> None:
        """Start anything of the stage's own (e.g. a capture thread)."""

    def deactivate_stage(self) -> None:
        """Stop what activate_stage started."""

    def cleanup_stage(self) -> None:
        """Free what configure_stage allocated."""

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """Extra key/value pairs for this node's diagnostics status."""
        return []

    def stage_warning(self) -> str:
        """Return the stage's own least urgent warning, shown when nothing else is ('')."""
        return ''

    # -- diagnostics ------------------------------------------------------------------------
    def frames_lost_in_transport(self) -> Optional[int]:
        """Frames DDS lost on the way to this stage's inputs; None when it cannot tell."""
        return frames_lost_in_transport(self.ports.inputs)

    def stage_status(self) -> DiagnosticStatus:
        """Report this node's own health: state, counters, last error, QoS problems."""
        # A rate over wall seconds: no clock jump.
        port_values, loss_text = self.ports.status_values(self.error_count(),
                                                          self.clock.mono_ns() / 1e9)
        health = stage_health(HealthSources(
            active=self._active, configured=self._configured, now_ns=self.clock.now_ns(),
            diagnostics_period_s=self.p['diagnostics_period_s'], last_error=self.last_error,
            last_error_ns=self._last_error_ns, fault=self.fault or self._unknown_note,
            qos_warnings=(self.ports.qos_warning,), shm_note=self.ports.shm_note,
            transport_loss=loss_text,
            stage_warning=(self.name_clash_warning() or
                           (self.ports.wiring_warning() if self._active else '') or
                           self.stage_warning()),
            values=(port_values + [(f'refused.{reason}', str(count))
                                   for reason, count in self.refusals.items() if count] +
                    self.diagnostic_values() + self.clock.values())))
        status = DiagnosticStatus(level=health.level.as_byte(), name=f'{self._fqn}: {self.STAGE}',
                                  message=health.message, hardware_id=self.hardware_id)
        self._last_level = status.level
        status.values = [KeyValue(key=k, value=v) for k, v in health.values]
        return status

    @property
    def hardware_id(self) -> str:
        """Return the hardware_id of this node's statuses (two robots never share one)."""
        return hardware_id_for(self.p['hardware_id'], self.get_namespace())

    def publish_diagnostics(self) -> None:
        """Publish this node's status on /diagnostics (once a period: ``diagnostics_timing``)."""
        if getattr(self, '_destroyed', False):
            return  # a frame thread that ends after destroy_node
        self.ports.housekeeping()
        array_msg = DiagnosticArray()
        array_msg.header.stamp = self.get_clock().now().to_msg()
        array_msg.status = [self.stage_status()]
        self._diag_pub.publish(array_msg)

    def destroy_node(self) -> None:
        """Stop threads and free resources before the node goes (safe to call twice)."""
        if getattr(self, '_destroyed', False):
            return
        self._destroyed = True
        if hasattr(self, 'diagnostics_timing'):  # construction may have failed before it
            self.diagnostics_timing.stop()
        if self._active:
            self._active = False
            self.deactivate_stage()
            for stage_input in self.inputs:
                stage_input.stop()
        if self._configured:
            self.ports.close()
            self.cleanup_stage()
            self._configured = False
        super().destroy_node()

"""
The base of every stage node: lifecycle, declared parameters, zero-copy inputs and outputs.

Over 400 lines: what every stage shares on the ROS side (lifecycle, parameters, inputs and
outputs on three transports, diagnostics); the logic it calls lives in core/.

A stage node is a managed (lifecycle) node: it allocates on *configure* (model, buffers,
publishers, subscriptions), processes frames only while *active*, and frees everything on
*cleanup*. With ``autostart`` (the default) the container, the runner and ``main()`` drive it
to active at once, so it also behaves like a plain node.

Frames reach a stage by reference from stages in the same process and as ROS messages from
anywhere else; see :mod:`edge_infer_ros.core.handoff`. The executor is not on the hot path: it
serves parameters, lifecycle services, diagnostics and messages from other processes.
"""

from __future__ import annotations

from dataclasses import replace
import os
import sys
import time
from typing import Any, Callable, Hashable, Optional, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from edge_infer_ros.core.clock import NodeClock
from edge_infer_ros.core.frame import Envelope, StageTiming
from edge_infer_ros.core.handoff import INPUT_MODES, LocalBus, StageInput, StagePublisher
from edge_infer_ros.core.health import HealthSources, stage_health
from edge_infer_ros.core.params import ParamSpec, spec_map, validate_updates
from edge_infer_ros.core.sequence import loss_warning, RecentLoss, SequenceTracker
from edge_infer_ros.core.shm import choose_same_host, SAME_HOST_TRANSPORTS
from edge_infer_ros.core.validate import (check_envelope, InputRefused, MAX_DETECTIONS,
                                          MAX_HARDWARE_ID, REASONS)
from edge_infer_ros.ros import convert, process, topics
from edge_infer_ros.ros.compat import (add_post_set_parameters_callback, PublisherEventCallbacks,
                                       SubscriptionEventCallbacks)
from edge_infer_ros.ros.nodes.name_clash import NameClashCheck
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.clock import ROSClock
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
import rclpy.subscription

#: Why lost frames cannot be counted here, or '' when they can: rclpy before Iron (Humble)
#: calls subscription callbacks without MessageInfo. Told by the feature (a subscription that
#: knows callbacks taking MessageInfo), not by the MessageInfo type, which Jazzy does not export.
MESSAGE_INFO_MISSING = '' if hasattr(rclpy.subscription.Subscription, 'CallbackType') else (
    'this rclpy passes no MessageInfo to subscriptions (before Iron)')

OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                          DiagnosticStatus.STALE)

#: Shortest time between two checks for a changed level outside the diagnostics period (s): a
#: status that flaps cannot flood /diagnostics (at most five extra publications a second).
LEVEL_CHANGE_PERIOD_S = 0.2

#: hardware_id of a node in the root namespace (elsewhere: the namespace).
DEFAULT_HARDWARE_ID = 'edge_infer_ros'


def hardware_id_for(value: str, namespace: str) -> str:
    """Return the hardware_id in force: the parameter, else the namespace (robots differ)."""
    return value or namespace.strip('/') or DEFAULT_HARDWARE_ID


#: Parameters every stage node has.
COMMON_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec('autostart', True, 'configure and activate at start (false: wait for lifecycle '
              'transitions from a manager)', runtime=False),
    ParamSpec('input_mode', 'thread', 'how frames from this process reach the stage: inline '
              '(run in the upstream thread, ~1 us), thread (own worker, stages overlap) or '
              'auto (inline while idle and the upstream has time to spare, else the worker)',
              choices=INPUT_MODES),
    ParamSpec('queue_depth', 1, 'frames waiting at the input before the oldest is dropped '
              '(keep-latest; 1 = lowest latency)', low=1, high=1000),
    ParamSpec('qos.input.reliability', 'reliable', 'reliability of input subscriptions '
              "(image inputs default to best_effort, like camera drivers' sensor-data QoS: "
              'it accepts reliable and best-effort publishers alike)',
              choices=('best_effort', 'reliable'), runtime=False),
    ParamSpec('qos.input.durability', 'volatile', 'durability of input subscriptions',
              choices=('volatile', 'transient_local'), runtime=False),
    ParamSpec('qos.input.depth', 5, 'history depth of input subscriptions', low=1, high=1000,
              runtime=False),
    ParamSpec('qos.output.reliability', 'reliable', 'reliability of output publishers '
              '(reliable serves reliable and best-effort subscribers alike)',
              choices=('best_effort', 'reliable'), runtime=False),
    ParamSpec('qos.output.durability', 'volatile', 'durability of output publishers',
              choices=('volatile', 'transient_local'), runtime=False),
    ParamSpec('qos.output.depth', 10, 'history depth of output publishers', low=1, high=1000,
              runtime=False),
    ParamSpec('diagnostics_period_s', 1.0, "period of this node's /diagnostics status",
              low=0.05, high=60.0),
    ParamSpec('hardware_id', '', "hardware_id of the diagnostics statuses ('': the node's "
              f'namespace without its slash, {DEFAULT_HARDWARE_ID} in the root namespace; at most '
              f'{MAX_HARDWARE_ID} characters)', check=lambda v: None if len(v) <=
              MAX_HARDWARE_ID else f'hardware_id has {len(v)} characters, at most '
              f'{MAX_HARDWARE_ID}'),
    ParamSpec('startup_grace_s', 5.0, 'an input with no publisher, or an output the robot '
              'needs with no subscriber, for this long after activation is a WARN naming the '
              'topic (a mistyped topic or remapping), s', low=0.1, high=3600.0),
    ParamSpec('transport.same_host', 'dds', "how frames travel between the package's own "
              'processes on this host: dds, or iceoryx2 (shared memory, zero-copy; DDS is still '
              'published for other subscribers, and used with a diagnostic when iceoryx2 is '
              'missing)', choices=SAME_HOST_TRANSPORTS, runtime=False),
)


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    """Build the ParameterDescriptor that `ros2 param describe` shows for a spec."""
    descriptor = ParameterDescriptor(description=spec.description)
    constraints = []
    if spec.choices:
        constraints.append('one of: ' + ', '.join(spec.choices))
    if not spec.runtime:
        constraints.append('start-only: set it while the node is not active; it applies at '
                           'the next configure')
    descriptor.additional_constraints = '; '.join(constraints)
    if isinstance(spec.default, bool) or isinstance(spec.default, (str, list, tuple)):
        return descriptor
    if isinstance(spec.default, int) and (spec.low is not None or spec.high is not None):
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.low if spec.low is not None else -2**63),
            to_value=int(spec.high if spec.high is not None else 2**63 - 1), step=1)]
    elif isinstance(spec.default, float) and (spec.low is not None or spec.high is not None):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.low if spec.low is not None else -1e308),
            to_value=float(spec.high if spec.high is not None else 1e308), step=0.0)]
    return descriptor


def qos_from(reliability: str, durability: str, depth: int) -> QoSProfile:
    """Build a QoS profile from parameter values."""
    return QoSProfile(
        depth=depth,
        reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                     else ReliabilityPolicy.BEST_EFFORT),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if durability == 'transient_local'
                    else DurabilityPolicy.VOLATILE))


#: The publisher key of a topic's samples where the rmw gives sequence numbers but no
#: publisher gid (rmw_fastrtps on Jazzy) and exactly one publisher feeds the topic.
ONLY_PUBLISHER = b'only-publisher'


def left_ns(envelope: Envelope[Any]) -> int:
    """Return when a frame left its last stage (its stamp before the first stage)."""
    return envelope.trace[-1].end_ns if envelope.trace else envelope.stamp_ns


def _ros_time_of(clock: Any) -> Callable[[], int]:
    """Read a node's ROS clock: /clock under use_sim_time, else the system clock directly."""
    if not isinstance(clock, ROSClock):
        return lambda: clock.now().nanoseconds

    def now_ns() -> int:
        # Without a /clock override, ROS time is the system time: time_ns skips building a
        # Time object (about half of the 3 us a reading costs).
        return clock.now().nanoseconds if clock.ros_time_is_active else time.time_ns()
    return now_ns


class StageNode(NameClashCheck, LifecycleNode):
    """A pipeline stage as a managed node; subclasses implement the stage hooks."""

    #: Stage kind written into frame traces (preprocess, detector, nms, action, ...).
    STAGE = 'stage'
    #: Default node name.
    DEFAULT_NAME = 'stage'
    #: Parameters of the stage itself (COMMON_PARAMS are added).
    PARAMS: tuple[ParamSpec, ...] = ()
    #: Default of input_mode for this stage (overridable by parameter).
    DEFAULT_INPUT_MODE = 'thread'
    #: Default input reliability: best_effort for image inputs (sensor-data QoS of camera
    #: drivers), reliable between the package's own stages.
    DEFAULT_INPUT_RELIABILITY = 'reliable'

    @classmethod
    def declared_specs(cls) -> dict[str, ParamSpec]:
        """Return the parameters this class declares: COMMON_PARAMS (with its defaults), PARAMS."""
        defaults = {'input_mode': cls.DEFAULT_INPUT_MODE,
                    'qos.input.reliability': cls.DEFAULT_INPUT_RELIABILITY}
        common = tuple(replace(s, default=defaults[s.name]) if s.name in defaults else s
                       for s in COMMON_PARAMS)
        return spec_map(common + cls.PARAMS)

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        # State first: destroy_node() must work even if construction fails half-way.
        self._active = False
        self._configured = False
        self._inputs: list[tuple[StageInput, Any, str]] = []
        self._outputs: list[StagePublisher] = []
        self._shm_inputs: list[tuple[Any, StageInput]] = []
        self.shm_note = ''  # why iceoryx2 is not used although asked for (diagnostics)
        self._frames_by_dds = 0  # frames an shm input got first by DDS (a peer elsewhere)
        super().__init__(node_name or self.DEFAULT_NAME, **kwargs)
        #: This node's clock: ROS time (use_sim_time honoured) for stamps and ages, monotonic
        #: for durations (core/clock.py); each node its own, several share a process.
        self.clock = NodeClock(_ros_time_of(self.get_clock()))
        try:
            self._declare_parameters()
        except BaseException:
            super().destroy_node()  # a refused parameter must not leave a node in the graph
            raise
        self.add_on_set_parameters_callback(self._check_parameters)
        add_post_set_parameters_callback(self, self._parameters_set)
        self.bus = LocalBus.for_context(self.context)
        self.last_error = ''
        self.fault = ''  # a lasting fault (e.g. backend fallback) reported in diagnostics
        self._last_error_ns = 0
        #: refused inputs per reason of core.validate (a fixed set of keys: bounded)
        self.refusals: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._qos_warnings: list[str] = []
        #: Per input topic: gaps in the publishers' sequence numbers (frames DDS lost).
        self.transport_loss: dict[str, SequenceTracker] = {}
        self._recent_loss: dict[str, RecentLoss] = {}
        self._publisher_counts: dict[str, tuple[float, int]] = {}
        #: Outputs the robot needs a subscriber on (cmd_vel), with what to check if none.
        self._activated_s = 0.0
        self._last_level: Optional[bytes] = None  # of the status computed last
        self._last_change_check = 0.0
        self._required: list[tuple[StagePublisher, str]] = []
        #: Per topic: when (monotonic s) it last had a peer, or activation when never.
        self._peer_seen_s: dict[str, float] = {}
        self._fqn = self.get_fully_qualified_name()
        self._diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self._diag_timer = self.create_timer(self.p['diagnostics_period_s'],
                                             self.publish_diagnostics)

    # -- parameters -------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        """Declare every spec with its descriptor; raise on a value the spec refuses."""
        self.param_specs = {**self.declared_specs(), **spec_map(self.instance_specs())}
        for spec in self.param_specs.values():
            default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            if isinstance(default, list) and not default:
                # rclpy cannot infer the type of an empty list: declare the type, then set it.
                kind = Parameter.Type.STRING_ARRAY if spec.list_of is str \
                    else Parameter.Type.DOUBLE_ARRAY
                self.declare_parameter(spec.name, kind, descriptor_for(spec))
                if self.get_parameter_or(spec.name).type_ == Parameter.Type.NOT_SET:
                    self.set_parameters([Parameter(spec.name, kind, [])])
                continue
            self.declare_parameter(spec.name, default, descriptor_for(spec))
        self.p: dict[str, Any] = {name: self._param_value(name) for name in self.param_specs}
        reason = validate_updates(self.param_specs, self.p, active=False)
        if reason:
            raise ValueError(f'{self.get_fully_qualified_name()}: bad parameter: {reason}')

    def instance_specs(self) -> tuple[ParamSpec, ...]:
        """Parameters whose names this node's own files choose (none unless overridden)."""
        return ()

    def _param_value(self, name: str) -> Any:
        value = self.get_parameter(name).value
        return list(value) if isinstance(value, (list, tuple)) or hasattr(value, 'tolist') \
            else value

    def _check_parameters(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        updates = {p.name: (list(p.value) if hasattr(p.value, '__iter__') and
                            not isinstance(p.value, str) else p.value) for p in parameters}
        reason = validate_updates(self.param_specs, updates, active=self._active)
        if reason is None:
            reason = self.check_parameters(updates)
        if reason:
            self.get_logger().warning(f'parameter change refused: {reason}')
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _parameters_set(self, parameters: Sequence[Parameter]) -> None:
        changed = {}
        for parameter in parameters:
            if parameter.name in self.param_specs:
                self.p[parameter.name] = self._param_value(parameter.name)
                changed[parameter.name] = self.p[parameter.name]
        if 'queue_depth' in changed or 'input_mode' in changed:
            for stage_input, _, _ in self._inputs:
                stage_input.apply_settings(self.p['input_mode'], self.p['queue_depth'])
        if 'diagnostics_period_s' in changed:
            self._diag_timer.cancel()
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(self.p['diagnostics_period_s'],
                                                 self.publish_diagnostics)
        pending = [n for n in changed if not self.param_specs[n].runtime]
        if pending and self._configured:
            self.get_logger().info(
                f'{", ".join(pending)} set; start-only, so it applies at the next configure '
                '(ros2 lifecycle set <node> cleanup, then configure)')
        if changed:
            self.parameters_changed(changed)

    def check_parameters(self, updates: dict[str, Any]) -> Optional[str]:
        """Stage-specific validation of a batch of changes (cross-parameter rules)."""
        return None

    def parameters_changed(self, changed: dict[str, Any]) -> None:
        """Apply accepted changes; they take effect on the next frame."""

    # -- inputs and outputs -----------------------------------------------------------------
    def add_input(self, topic: str, msg_type: Any, from_msg: Callable[[Any], Envelope],
                  callback: Callable[[Envelope, int], None],
                  key_of: Callable[[Any], Hashable] = convert.message_key,
                  mode: Optional[str] = None, depth: Optional[int] = None,
                  qos: Optional[QoSProfile] = None) -> StageInput:
        """
        Subscribe a stage callback to a topic, locally by reference and through DDS.

        ``key_of`` names the frame a message belongs to, so that a frame that came by
        reference is not taken again from its DDS echo; the default (header stamp and
        frame_id) fits every message with a header. An explicit ``mode`` or ``depth`` pins the
        input: the stage-wide ``input_mode`` and ``queue_depth`` parameters then leave it alone.
        """
        resolved = self.resolve_topic_name(topic)
        stage_input = StageInput(resolved, callback, mode=mode or self.p['input_mode'],
                                 depth=depth or self.p['queue_depth'],
                                 name=f'{self.get_name()}:{topic}', on_error=self._stage_error,
                                 pinned=mode is not None or depth is not None,
                                 gate=self._gate)

        tracker = self.transport_loss.setdefault(resolved, SequenceTracker())
        self._recent_loss.setdefault(resolved, RecentLoss())

        def on_message(msg: Any, info: Optional[dict]) -> None:
            sequence = info.get('publication_sequence_number') if info else None
            gid = (info.get('publisher_gid') or {}).get('data') if info else None
            if gid is None and sequence and self._one_publisher(resolved):
                gid = ONLY_PUBLISHER  # an rmw without publisher_gid (Jazzy): one stream
            if sequence is None or gid is None or sequence <= 0:
                tracker.observe_without_info()
            else:
                tracker.observe(gid, sequence)
            try:
                with convert.judged_on(self.clock.now_ns):  # stamps against this node's clock
                    envelope = from_msg(msg)
            except Exception as error:  # noqa: B902 - any malformed message is counted
                stage_input.stats.received += 1
                if not isinstance(error, InputRefused):  # counted like a malformed shm sample
                    error = InputRefused('malformed', f'{type(error).__name__}: {error}')
                self._stage_error(error, None, f'bad message on {resolved}')
                stage_input.stats.errors += 1  # after the reason: whoever sees it sees why
                return
            echoes = stage_input.stats.duplicates_ignored
            if shm_input is not None:
                stage_input.deliver_once(envelope, key_of(msg), checked=True)
                self._frames_by_dds += stage_input.stats.duplicates_ignored == echoes
            else:
                stage_input.deliver_from_ros(envelope, key_of(msg))
                if gid is not None and stage_input.stats.duplicates_ignored > echoes:
                    tracker.ignore(gid)  # a publisher of this process: frames come by reference

        shm_input = self._shm_input(resolved, stage_input)
        on_ros_message: Callable[..., None] = (on_message if not MESSAGE_INFO_MISSING
                                               else lambda msg: on_message(msg, None))
        if qos is None:
            qos = qos_from(self.p['qos.input.reliability'], self.p['qos.input.durability'],
                           self.p['qos.input.depth'])
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda info: self._incompatible_qos(resolved, info, 'publisher'))
        subscription = self.create_subscription(msg_type, resolved, on_ros_message, qos,
                                                event_callbacks=events)
        self.bus.attach(resolved, stage_input, has_ros_subscription=True)
        self._inputs.append((stage_input, subscription, resolved))
        return stage_input

    def require_subscriber(self, output: StagePublisher, hint: str) -> None:
        """Mark an output the robot needs: no subscriber past startup_grace_s is a WARN."""
        self._required.append((output, hint))

    def wiring_warning(self) -> str:
        """
        Return a WARN naming a topic that has had no peer for startup_grace_s ('' if none).

        A mistyped topic or remapping leaves every node "running" while nothing flows; this
        names the topic, and clears as soon as a peer appears.
        """
        if not self._active:
            return ''
        now = time.monotonic()
        grace = self.p['startup_grace_s']
        lonely = [(topic, 'publisher', 'check the topic name, the remapping and the driver')
                  for _, _, topic in self._inputs if self.count_publishers(topic) == 0]
        lonely += [(o.topic, 'subscriber', hint) for o, hint in self._required
                   if o.ros_publisher is not None and
                   o.ros_publisher.get_subscription_count() == 0]
        found = ''
        for topic, peer, hint in lonely:
            since = self._peer_seen_s.setdefault(topic, self._activated_s)
            if not found and now - since >= grace:
                found = f'no {peer} on {topic} for {now - since:.0f} s: {hint}'
        missing = {topic for topic, _, _ in lonely}
        for topic in list(self._peer_seen_s):
            if topic not in missing:
                self._peer_seen_s[topic] = now
        return found

    def _gate(self, envelope: Envelope, local: bool) -> None:
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

    def _one_publisher(self, topic: str) -> bool:
        """Tell whether one publisher feeds the topic (graph asked at most once a second)."""
        now = time.monotonic()
        asked = self._publisher_counts.get(topic)
        if asked is None or now - asked[0] > 1.0:
            asked = self._publisher_counts[topic] = (now, self.count_publishers(topic))
        return asked[1] == 1

    def add_output(self, topic: str, msg_type: Any, to_msg: Callable[[Envelope], Any],
                   key_of: Callable[[Envelope], Hashable] = convert.envelope_key,
                   qos: Optional[QoSProfile] = None) -> StagePublisher:
        """
        Create a publisher that hands frames on by reference and builds messages on demand.

        ``key_of`` names a frame as its message's ``key_of`` at the inputs will (the default:
        capture stamp and frame_id, as :func:`convert.message_key` reads them from a header).
        """
        resolved = self.resolve_topic_name(topic)
        if qos is None:
            qos = qos_from(self.p['qos.output.reliability'], self.p['qos.output.durability'],
                           self.p['qos.output.depth'])
        events = PublisherEventCallbacks(
            incompatible_qos=lambda info: self._incompatible_qos(resolved, info, 'subscription'))
        publisher = self.create_publisher(msg_type, resolved, qos, event_callbacks=events)
        output = StagePublisher(self.bus, resolved, publisher, to_msg, key_of)
        if self._same_host() == 'iceoryx2':
            from edge_infer_ros.core.shm import ShmError, ShmPublisher
            try:
                output.shm = ShmPublisher(resolved)
            except ShmError as error:
                self._shm_fallback(f'{resolved}: {error}: using DDS')
        self._outputs.append(output)
        return output

    def _same_host(self) -> str:
        transport, reason = choose_same_host(self.p['transport.same_host'])
        if reason:
            self._shm_fallback(reason)
        return transport

    def _shm_fallback(self, reason: str) -> None:
        if reason != self.shm_note:
            self.get_logger().warning(reason)
        self.shm_note = reason

    def _shm_input(self, resolved: str, stage_input: StageInput) -> Any:
        """Receive a topic through shared memory too (frames keyed like their DDS echo)."""
        if self._same_host() != 'iceoryx2':
            return None
        from edge_infer_ros.core.shm import ShmError, ShmSubscriber

        def on_frame(envelope: Envelope, received_ns: int) -> None:
            stage_input.deliver_once(envelope, (envelope.stamp_ns, envelope.frame_id))

        def on_malformed(text: str) -> None:
            stage_input.refuse(InputRefused('malformed', text), None)
        try:
            subscriber = ShmSubscriber(resolved, on_frame, on_error=lambda text: self._stage_error(
                RuntimeError(text), None, f'shared memory on {resolved}'),
                on_malformed=on_malformed)
        except ShmError as error:
            self._shm_fallback(f'{resolved}: {error}: using DDS')
            return None
        subscriber.start()
        self.bus.count_shm(resolved, +1)
        self._shm_inputs.append((subscriber, stage_input))
        return subscriber

    def _incompatible_qos(self, topic: str, info: Any, other: str) -> None:
        policy = getattr(info.last_policy_kind, 'name', str(info.last_policy_kind))
        text = (f'incompatible QoS on {topic}: a {other} offers/requests an incompatible '
                f'{policy} policy ({info.total_count} so far), so no data flows between them; '
                "set this node's qos.* parameters to match (cameras usually publish "
                'best_effort: use qos.input.reliability:=best_effort)')
        self.get_logger().warning(text)
        self._qos_warnings.append(text)

    def _destroy_io(self) -> None:
        for subscriber, stage_input in self._shm_inputs:
            subscriber.close()
            self.bus.count_shm(subscriber.topic, -1)
        self._shm_inputs.clear()
        for stage_input, subscription, resolved in self._inputs:
            stage_input.stop()
            self.bus.detach(resolved, stage_input, has_ros_subscription=True)
            self.destroy_subscription(subscription)
        for output in self._outputs:
            self.destroy_publisher(output.ros_publisher)
            if output.shm is not None:
                output.shm.close()
        self._inputs.clear()
        self._outputs.clear()
        self._required.clear()

    @property
    def inputs(self) -> list[StageInput]:
        """List this stage's inputs, for counters and tests."""
        return [i for i, _, _ in self._inputs]

    @property
    def outputs(self) -> list[StagePublisher]:
        """List this stage's outputs, for counters and tests."""
        return list(self._outputs)

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
        return done

    # -- faults -----------------------------------------------------------------------------
    def _stage_error(self, error: BaseException, envelope: Optional[Envelope],
                     what: str = '') -> None:
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
        now = time.monotonic()
        if now - self._last_change_check < LEVEL_CHANGE_PERIOD_S or \
                getattr(self, '_destroyed', False):
            return
        self._last_change_check = now
        before = self._last_level
        if self.stage_status().level != before:
            self.publish_diagnostics()

    def record_error(self, text: str) -> None:
        """Record an error with its time: health is ERROR while errors are recent."""
        self.last_error = text
        self._last_error_ns = self.clock.now_ns()

    def error_count(self) -> int:
        """Frames this stage failed on (dropped and counted)."""
        return sum(i.stats.errors for i in self.inputs)

    # -- lifecycle --------------------------------------------------------------------------
    _unknown_note = ''  # the WARN of parameters given but unknown (set at configure)

    def unknown_parameters(self) -> list[str]:
        """Names given to the node (a parameter file, -p) that it does not have: typos."""
        overrides = getattr(self, '_parameter_overrides', {}) or {}
        return sorted(name for name in overrides
                      if not self.has_parameter(name) and not name.startswith('qos_overrides.'))

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Allocate: publishers, subscriptions, then the stage's own resources."""
        unknown = self.unknown_parameters()
        self._unknown_note = ''
        if unknown:  # rclpy ignores them without a word: a typo would silently keep a default
            self._unknown_note = (f'unknown parameter(s) ignored: {", ".join(unknown)[:200]} '
                                  '(not parameters of this node: a typo?)')
            self.get_logger().warning(self._unknown_note)
        try:
            self.create_io()
            self.configure_stage()
        except Exception as error:  # noqa: B902 - reported, and the transition fails cleanly
            self.record_error(f'configure failed: {type(error).__name__}: {error}')
            self.get_logger().error(self.last_error)
            self._destroy_io()
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
        self._peer_seen_s.clear()
        self._activated_s = time.monotonic()
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
        self._destroy_io()
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
        trackers = self.transport_loss.values()
        if MESSAGE_INFO_MISSING or any(t.totals.without_info and not t.totals.received
                                       for t in trackers):
            return None
        return sum(t.lost for t in trackers)

    def transport_loss_status(self) -> tuple[list[tuple[str, str]], Optional[str]]:
        """Diagnostic values of frames lost in transport, and the WARN text if too many."""
        lost = self.frames_lost_in_transport()
        if lost is None:
            why = MESSAGE_INFO_MISSING or 'the middleware gives no publication sequence numbers'
            return [('frames_lost_in_transport', 'unknown'),
                    ('transport_loss_counting', f'unavailable: {why}')], None
        now_s = self.clock.mono_ns() / 1e9  # a rate over wall seconds: no clock jump
        warning = None
        for topic, tracker in self.transport_loss.items():
            recent = self._recent_loss[topic]
            window_lost, window_total = recent.update(now_s, tracker.totals.received,
                                                      tracker.lost)
            warning = warning or loss_warning(topic, window_lost, window_total, recent.window_s)
        return [('frames_lost_in_transport', str(lost)),
                ('transport_loss_counting', 'publication sequence numbers')], warning

    def matched_values(self) -> list[tuple[str, str]]:
        """
        Return the DDS peers each topic of this node has matched (not merely discovered).

        A volatile sample published before the reader matched is gone without a trace, and
        matching between processes lags discovery under load: the split runner starts the
        camera only once every hop reports a match on both ends.
        """
        values = [(f'matched_subscriptions:{o.topic}',
                   str(o.ros_publisher.get_subscription_count()))
                  for o in self._outputs if o.ros_publisher is not None]
        for _, subscription, topic in self._inputs:
            count = getattr(subscription, 'get_publisher_count', None)  # rclpy >= Jazzy
            if count is not None:
                values.append((f'matched_publishers:{topic}', str(count())))
        return values

    def stage_status(self) -> DiagnosticStatus:
        """Report this node's own health: state, counters, last error, QoS problems."""
        loss_values, loss_text = self.transport_loss_status()
        health = stage_health(HealthSources(
            active=self._active, configured=self._configured, now_ns=self.clock.now_ns(),
            diagnostics_period_s=self.p['diagnostics_period_s'], last_error=self.last_error,
            last_error_ns=self._last_error_ns, fault=self.fault or self._unknown_note,
            qos_warnings=self._qos_warnings, shm_note=self.shm_note, transport_loss=loss_text,
            stage_warning=(self.name_clash_warning() or self.wiring_warning() or
                           self.stage_warning()),
            values=(self.counter_values() + self.shm_values() + self.diagnostic_values() +
                    loss_values + self.matched_values() + self.clock.values())))
        status = DiagnosticStatus(level=health.level.as_byte(), name=f'{self._fqn}: {self.STAGE}',
                                  message=health.message, hardware_id=self.hardware_id)
        self._last_level = status.level
        status.values = [KeyValue(key=k, value=v) for k, v in health.values]
        return status

    @property
    def hardware_id(self) -> str:
        """Return the hardware_id of this node's statuses (two robots never share one)."""
        return hardware_id_for(self.p['hardware_id'], self.get_namespace())

    def counter_values(self) -> list[tuple[str, str]]:
        """Frame counters over the inputs and outputs, and refused inputs per reason."""
        received = sum(i.stats.received for i in self.inputs)
        processed = sum(i.stats.processed for i in self.inputs)
        dropped = sum(i.stats.dropped for i in self.inputs)
        # Frames replaced in shared memory before this stage took them: received and dropped
        # (keep-latest), exactly as a frame replaced in an in-process queue.
        shm_dropped = sum(s.stats.dropped for s, _ in self._shm_inputs)
        received, dropped = received + shm_dropped, dropped + shm_dropped
        values = [('frames_received', str(received)), ('frames_processed', str(processed)),
                  ('frames_dropped', str(dropped)), ('frame_errors', str(self.error_count())),
                  ('frames_published', str(max((o.stats.published for o in self._outputs),
                                               default=0))),
                  ('messages_built', str(sum(o.stats.messages_built for o in self._outputs))),
                  ('local_deliveries',
                   str(sum(o.stats.local_deliveries for o in self._outputs)))]
        return values + [(f'refused.{reason}', str(count))
                         for reason, count in self.refusals.items() if count]

    def shm_values(self) -> list[tuple[str, str]]:
        """Same-host transport in use, its counters; dead shm subscribers are cleaned up here."""
        shm_out = [o.shm for o in self._outputs if o.shm is not None]
        if not shm_out and not self._shm_inputs:
            return [('transport_same_host', 'dds')]
        for sender in shm_out:
            try:
                sender.cleanup_dead()
            except Exception:  # noqa: B902 - closed during shutdown
                pass
        values = [('transport_same_host', 'iceoryx2'),
                  ('shm_frames_sent', str(sum(o.stats.shm_sent for o in self._outputs))),
                  ('shm_send_failures', str(sum(o.stats.shm_failed for o in self._outputs))),
                  ('shm_frames_received',
                   str(sum(s.stats.received for s, _ in self._shm_inputs))),
                  ('shm_frames_dropped', str(sum(s.stats.dropped for s, _ in self._shm_inputs)))]
        if self._frames_by_dds:
            values.append(('transport_note', f'{self._frames_by_dds} frames came by DDS, not '
                           'shared memory: their publisher is on another host or uses '
                           'transport.same_host dds'))
        return values

    def publish_diagnostics(self) -> None:
        """Publish this node's status on /diagnostics."""
        array_msg = DiagnosticArray()
        array_msg.header.stamp = self.get_clock().now().to_msg()
        array_msg.status = [self.stage_status()]
        self._diag_pub.publish(array_msg)

    def destroy_node(self) -> None:
        """Stop threads and free resources before the node goes (safe to call twice)."""
        if getattr(self, '_destroyed', False):
            return
        self._destroyed = True
        if self._active:
            self._active = False
            self.deactivate_stage()
            for stage_input in self.inputs:
                stage_input.stop()
        if self._configured:
            self._destroy_io()
            self.cleanup_stage()
            self._configured = False
        super().destroy_node()


def run_single(node_class: type[StageNode], args: Optional[list[str]] = None) -> None:
    """Run one stage node on its own (``ros2 run``), driving it to active with autostart."""
    prog = os.path.basename(sys.argv[0] if args is None else
                            (args[0] if args else node_class.DEFAULT_NAME))
    argv = process.parse_node_command_line(
        prog, (node_class.__doc__ or '').strip().split('\n')[0],
        process.parameter_help(node_class.declared_specs().values()), args)
    stop = process.init(argv)
    executor = SingleThreadedExecutor()
    nodes: list[StageNode] = []
    spin_thread = None
    failed = False
    try:
        node = node_class()
        nodes.append(node)
        executor.add_node(node)
        if node.p['autostart'] and not node.start():
            node.get_logger().error(f'could not start: {node.last_error}')
        spin_thread = process.spin_in_thread(executor, stop)
        stop.wait()
    except Exception as error:  # noqa: B902 - a clear message and exit code 1, no traceback
        print(f'[{prog}] {type(error).__name__}: {error}', file=sys.stderr)
        failed = True
    finally:
        process.finish(executor, spin_thread, nodes)
    if failed or stop.failed:
        sys.exit(1)

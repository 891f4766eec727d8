"""
Input and output ports of a stage node: each owns its transports, loss count and status values.

A frame reaches an input by reference from stages in this process (:mod:`..core.handoff`), as
a sample of the same-host transport from the package's other processes on this host
(:mod:`edge_infer_ros.ros.same_host`), and as a DDS message from anywhere else; whichever comes
first wins, the others are recognised and ignored. An output hands frames on the same ways.
:class:`~edge_infer_ros.ros.nodes.base.StageNode` creates the ports and assembles their
values into its status.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Hashable, Optional, Protocol

from edge_infer_ros.core.clock import NodeClock
from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.handoff import LOCAL, LocalBus, StageInput, StagePublisher
from edge_infer_ros.core.sequence import loss_warning, RecentLoss, SequenceTracker
from edge_infer_ros.core.validate import InputRefused
from edge_infer_ros.ros import convert, diagnostic_keys as keys
from edge_infer_ros.ros.compat import publisher_events, SubscriptionEventCallbacks
from edge_infer_ros.ros.node_params import qos_from
from edge_infer_ros.ros.same_host import choose_same_host, SameHostTransport
from rclpy.qos import QoSProfile
import rclpy.subscription

#: Why lost frames cannot be counted here, or '' when they can: rclpy before Iron (Humble)
#: calls subscription callbacks without MessageInfo. Told by the feature (a subscription that
#: knows callbacks taking MessageInfo), not by the MessageInfo type, which Jazzy does not export.
MESSAGE_INFO_MISSING = '' if hasattr(rclpy.subscription.Subscription, 'CallbackType') else (
    'this rclpy passes no MessageInfo to subscriptions (before Iron)')

#: The publisher key of a topic's samples where the rmw gives sequence numbers but no
#: publisher gid (rmw_fastrtps on Jazzy) and exactly one publisher feeds the topic.
ONLY_PUBLISHER = b'only-publisher'


class PortOwner(Protocol):
    """What a port needs of its node (a StageNode): rclpy's Node, the bus, faults, settings."""

    p: dict[str, Any]
    bus: LocalBus
    clock: NodeClock
    ports: 'Ports'

    def resolve_topic_name(self, topic: str) -> str:
        """Resolve a topic name as rclpy's Node does (so do the next seven)."""

    def get_logger(self) -> Any:
        """Return the node's logger."""

    def get_name(self) -> str:
        """Return the node's name."""

    def count_publishers(self, topic: str) -> int:
        """Count the topic's publishers in the graph."""

    def create_subscription(self, *args: Any, **kwargs: Any) -> Any:
        """Create a DDS subscription."""

    def create_publisher(self, *args: Any, **kwargs: Any) -> Any:
        """Create a DDS publisher."""

    def destroy_subscription(self, subscription: Any) -> Any:
        """Destroy a DDS subscription."""

    def destroy_publisher(self, publisher: Any) -> Any:
        """Destroy a DDS publisher."""

    def stage_error(self, error: BaseException, envelope: Optional[Envelope[Any]],
                    what: str = '') -> None:
        """Record a failed or refused frame (reason, time, refusal count)."""

    def gate_frame(self, envelope: Envelope[Any], local: bool) -> None:
        """Check a frame that skipped message conversion; raise to refuse it."""


class InputPort:
    """
    One input of a stage: its queue (StageInput), DDS subscription, same-host receiver, loss.

    ``key_of`` names the frame a message belongs to, so that a frame that came by reference
    or by the same-host transport is not taken again from its DDS echo.
    """

    def __init__(self, node: PortOwner, topic: str, msg_type: Any,
                 from_msg: Callable[[Any], Envelope[Any]],
                 callback: Callable[[Envelope[Any], int], None],
                 key_of: Callable[[Any], Hashable], mode: Optional[str], depth: Optional[int],
                 qos: QoSProfile, same_host: Optional[SameHostTransport]) -> None:
        self._node = node
        self.topic = resolved = node.resolve_topic_name(topic)
        self.stage_input = StageInput(resolved, callback, mode=mode or node.p['input_mode'],
                                      depth=depth or node.p['queue_depth'],
                                      name=f'{node.get_name()}:{topic}',
                                      on_error=node.stage_error,
                                      pinned=mode is not None or depth is not None,
                                      gate=node.gate_frame)
        self._from_msg = from_msg
        self._key_of = key_of
        #: Gaps in the publishers' sequence numbers (frames DDS lost on the way here).
        self.loss = SequenceTracker()
        self.recent_loss = RecentLoss()
        #: Samples the middleware itself reports lost on the way (its message_lost event):
        #: unlike the gaps, it counts the stream's edges and not this reader's own overflow.
        self.middleware_lost = 0
        self.recent_middleware_loss = RecentLoss()
        self.frames_by_dds = 0  # frames a same-host input got first by DDS (a peer elsewhere)
        self._publishers_asked = (0.0, 0)  # (monotonic s, count): the graph asked once a s
        self.receiver = self._open_receiver(same_host)
        on_ros_message: Callable[..., None] = (self._on_message if not MESSAGE_INFO_MISSING
                                               else lambda msg: self._on_message(msg, None))
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda info: node.ports.incompatible_qos(resolved, info,
                                                                      'publisher'),
            message_lost=self._on_message_lost)
        self.subscription = node.create_subscription(msg_type, resolved, on_ros_message, qos,
                                                     event_callbacks=events)
        node.bus.attach(resolved, self.stage_input, has_ros_subscription=True)

    def _on_message(self, msg: Any, info: Optional[dict[str, Any]]) -> None:
        """Take a DDS message: count its sequence number, convert, deliver unless a copy."""
        stage_input, tracker, resolved = self.stage_input, self.loss, self.topic
        sequence = info.get('publication_sequence_number') if info else None
        gid = (info.get('publisher_gid') or {}).get('data') if info else None
        if gid is None and sequence and self._one_publisher():
            gid = ONLY_PUBLISHER  # an rmw without publisher_gid (Jazzy): one stream
        if sequence is None or gid is None or sequence <= 0:
            tracker.observe_without_info()
        else:
            tracker.observe(gid, sequence)
        try:
            with convert.judged_on(self._node.clock.now_ns):  # stamps against the node's clock
                envelope = self._from_msg(msg)
        except Exception as error:  # noqa: B902 - any malformed message is counted
            stage_input.stats.received += 1
            if not isinstance(error, InputRefused):  # counted like a malformed shm sample
                error = InputRefused('malformed', f'{type(error).__name__}: {error}')
            self._node.stage_error(error, None, f'bad message on {resolved}')
            stage_input.stats.errors += 1  # after the reason: whoever sees it sees why
            return
        first = stage_input.deliver_from_ros(envelope, self._key_of(msg))
        if first is None:
            self.frames_by_dds += self.receiver is not None
        elif first == LOCAL and gid is not None:
            tracker.ignore(gid)  # a publisher of this process: frames come by reference

    def _on_message_lost(self, info: Any) -> None:
        self.middleware_lost = int(info.total_count)

    def _one_publisher(self) -> bool:
        """Tell whether one publisher feeds the topic (graph asked at most once a second)."""
        now = time.monotonic()
        if not self._publishers_asked[0] or now - self._publishers_asked[0] > 1.0:
            self._publishers_asked = (now, self._node.count_publishers(self.topic))
        return self._publishers_asked[1] == 1

    def _open_receiver(self, same_host: Optional[SameHostTransport]) -> Any:
        """Receive the topic by the same-host transport too (frames keyed like their echo)."""
        if same_host is None:
            return None
        stage_input, node, resolved = self.stage_input, self._node, self.topic

        def on_frame(envelope: Envelope[Any], received_ns: int) -> None:
            stage_input.deliver_same_host(envelope, (envelope.stamp_ns, envelope.frame_id))

        def on_malformed(text: str) -> None:
            stage_input.refuse(InputRefused('malformed', text), None)
        try:
            receiver = same_host.receiver(
                resolved, on_frame, on_error=lambda text: node.stage_error(
                    RuntimeError(text), None, f'shared memory on {resolved}'),
                on_malformed=on_malformed)
        except RuntimeError as error:
            node.ports.same_host_fallback(f'{resolved}: {error}: using DDS')
            return None
        receiver.start()
        node.bus.count_same_host(resolved, +1)
        return receiver

    def publisher_count(self) -> Optional[int]:
        """Return the DDS publishers matched (not merely discovered); None before Jazzy."""
        count = getattr(self.subscription, 'get_publisher_count', None)  # rclpy >= Jazzy
        return None if count is None else int(count())

    def loss_warning(self, now_s: float) -> Optional[str]:
        """Return the WARN text when too many recent frames were lost in transport."""
        received = self.loss.totals.received
        window_lost, window_total = self.recent_loss.update(now_s, received, self.loss.lost)
        window_middleware, _ = self.recent_middleware_loss.update(now_s, received,
                                                                  self.middleware_lost)
        return loss_warning(self.topic, window_lost, window_total, self.recent_loss.window_s,
                            middleware_lost=window_middleware)

    def close(self) -> None:
        """Stop receiving on every transport and free the subscription."""
        if self.receiver is not None:
            self.receiver.close()
            self._node.bus.count_same_host(self.topic, -1)
            self.receiver = None
        self.stage_input.stop()
        self._node.bus.detach(self.topic, self.stage_input, has_ros_subscription=True)
        self._node.destroy_subscription(self.subscription)


class OutputPort(StagePublisher):
    """
    One output of a stage: by reference, by the same-host transport, by DDS when needed.

    ``key_of`` names a frame as its message's ``key_of`` at the inputs will.
    """

    def __init__(self, node: PortOwner, topic: str, msg_type: Any,
                 to_msg: Callable[[Envelope[Any]], Any],
                 key_of: Callable[[Envelope[Any]], Hashable], qos: QoSProfile,
                 same_host: Optional[SameHostTransport]) -> None:
        self._node = node
        resolved = node.resolve_topic_name(topic)
        events = publisher_events(
            incompatible_qos=lambda info: node.ports.incompatible_qos(resolved, info,
                                                                      'subscription'),
            matched=self.counts_changed)
        publisher = node.create_publisher(msg_type, resolved, qos, event_callbacks=events)
        super().__init__(node.bus, resolved, publisher, to_msg, key_of)
        if same_host is not None:
            try:
                self.same_host = same_host.sender(resolved)
            except RuntimeError as error:
                node.ports.same_host_fallback(f'{resolved}: {error}: using DDS')

    def housekeeping(self) -> None:
        """Forget same-host subscribers whose process is gone (called with diagnostics)."""
        if self.same_host is not None:
            try:
                self.same_host.housekeeping()
            except Exception:  # noqa: B902 - closed during shutdown
                pass

    def close(self) -> None:
        """Free the DDS publisher and the same-host sender."""
        self._node.destroy_publisher(self.ros_publisher)
        if self.same_host is not None:
            self.same_host.close()


class Ports:
    """
    A stage's inputs and outputs: their same-host transport, wiring check and status values.

    The node declares its ports through this; the lifecycle opens them at configure and
    closes them at cleanup.
    """

    def __init__(self, node: PortOwner) -> None:
        self._node = node
        self.inputs: list[InputPort] = []
        self.outputs: list[OutputPort] = []
        #: The same-host transport in use ('dds': none) and why (a diagnostic value).
        self.same_host_name = 'dds'
        self.same_host_why = ''
        #: Outputs the robot needs a subscriber on (cmd_vel), with what to check if none.
        self._required: list[tuple[OutputPort, str]] = []
        #: Per topic: when (monotonic s) it last had a peer, or activation when never.
        self._peer_seen_s: dict[str, float] = {}
        self.activated_s = 0.0
        self.shm_note = ''  # why the same-host transport asked for is not used (a WARN)
        self.qos_warning = ''  # the latest incompatible-QoS event (a WARN)

    def add_input(self, topic: str, msg_type: Any, from_msg: Callable[[Any], Envelope[Any]],
                  callback: Callable[[Envelope[Any], int], None],
                  key_of: Callable[[Any], Hashable], mode: Optional[str],
                  depth: Optional[int], qos: Optional[QoSProfile]) -> InputPort:
        """Open an input (see StageNode.add_input); QoS from the node's qos.input.* if None."""
        p = self._node.p
        if qos is None:
            qos = qos_from(p['qos.input.reliability'], p['qos.input.durability'],
                           p['qos.input.depth'])
        port = InputPort(self._node, topic, msg_type, from_msg, callback, key_of, mode, depth,
                         qos, self._same_host())
        self.inputs.append(port)
        return port

    def add_output(self, topic: str, msg_type: Any, to_msg: Callable[[Envelope[Any]], Any],
                   key_of: Callable[[Envelope[Any]], Hashable],
                   qos: Optional[QoSProfile]) -> OutputPort:
        """Open an output (see StageNode.add_output); QoS from qos.output.* if None."""
        p = self._node.p
        if qos is None:
            qos = qos_from(p['qos.output.reliability'], p['qos.output.durability'],
                           p['qos.output.depth'])
        output = OutputPort(self._node, topic, msg_type, to_msg, key_of, qos, self._same_host())
        self.outputs.append(output)
        return output

    def _same_host(self) -> Optional[SameHostTransport]:
        chosen = choose_same_host(self._node.p['transport.same_host'])
        if chosen.fell_back:
            self.same_host_fallback(chosen.why)
        self.same_host_name, self.same_host_why = chosen.name, chosen.why
        return chosen.transport

    def same_host_fallback(self, reason: str) -> None:
        """Note why the same-host transport asked for is not used (logged once per reason)."""
        if reason != self.shm_note:
            self._node.get_logger().warning(reason)
        self.shm_note = reason

    def incompatible_qos(self, topic: str, info: Any, other: str) -> None:
        """Warn (log and status) that a peer's QoS keeps data from flowing."""
        policy = getattr(info.last_policy_kind, 'name', str(info.last_policy_kind))
        self.qos_warning = (
            f'incompatible QoS on {topic}: a {other} offers/requests an incompatible '
            f'{policy} policy ({info.total_count} so far), so no data flows between them; '
            "set this node's qos.* parameters to match (cameras usually publish "
            'best_effort: use qos.input.reliability:=best_effort)')
        self._node.get_logger().warning(self.qos_warning)

    def require_subscriber(self, output: OutputPort, hint: str) -> None:
        """Mark an output the robot needs: no subscriber past startup_grace_s is a WARN."""
        self._required.append((output, hint))

    def activated(self) -> None:
        """Start the wiring check's grace period; the first frames go by fresh counts."""
        self._peer_seen_s.clear()
        self.activated_s = time.monotonic()
        for output in self.outputs:
            output.counts_changed()

    def wiring_warning(self) -> str:
        """
        Return a WARN naming a topic that has had no peer for startup_grace_s ('' if none).

        A mistyped topic or remapping leaves every node "running" while nothing flows; this
        names the topic, and clears as soon as a peer appears.
        """
        now = time.monotonic()
        grace = self._node.p['startup_grace_s']
        lonely = [(port.topic, 'publisher', 'check the topic name, the remapping and the driver')
                  for port in self.inputs if self._node.count_publishers(port.topic) == 0]
        lonely += [(o.topic, 'subscriber', hint) for o, hint in self._required
                   if o.ros_publisher is not None and
                   o.ros_publisher.get_subscription_count() == 0]
        found = ''
        for topic, peer, hint in lonely:
            since = self._peer_seen_s.setdefault(topic, self.activated_s)
            if not found and now - since >= grace:
                found = f'no {peer} on {topic} for {now - since:.0f} s: {hint}'
        missing = {topic for topic, _, _ in lonely}
        for topic in list(self._peer_seen_s):
            if topic not in missing:
                self._peer_seen_s[topic] = now
        return found

    def status_values(self, errors: int,
                      now_s: float) -> tuple[list[tuple[str, str]], Optional[str]]:
        """Return the ports' diagnostic values, and the transport-loss WARN text if any."""
        loss_values, loss_text = transport_loss_values(self.inputs, now_s)
        values = (counter_values(self.inputs, self.outputs, errors) +
                  same_host_values(self.same_host_name, self.same_host_why, self.outputs,
                                   self.inputs) +
                  loss_values + matched_values(self.inputs, self.outputs))
        return values, loss_text

    def housekeeping(self) -> None:
        """Periodic upkeep of the outputs (dead same-host peers)."""
        for output in self.outputs:
            output.housekeeping()

    def close(self) -> None:
        """Close every port (cleanup, or a configure that failed)."""
        for port in self.inputs:
            port.close()
        for output in self.outputs:
            output.close()
        self.inputs.clear()
        self.outputs.clear()
        self._required.clear()


def same_host_values(name: str, why: str, outputs: list[OutputPort],
                     inputs: list[InputPort]) -> list[tuple[str, str]]:
    """Diagnostic values of the same-host transport in use, why, and its counters."""
    receivers = [p.receiver for p in inputs if p.receiver is not None]
    if not receivers and not any(o.same_host is not None for o in outputs):
        return [('transport_same_host', 'dds'), ('transport_same_host_why', why)]
    values = [('transport_same_host', name), ('transport_same_host_why', why),
              ('shm_frames_sent', str(sum(o.stats.same_host_sent for o in outputs))),
              ('shm_send_failures', str(sum(o.stats.same_host_failed for o in outputs))),
              ('shm_frames_received', str(sum(r.stats.received for r in receivers))),
              ('shm_frames_dropped', str(sum(r.stats.dropped for r in receivers)))]
    by_dds = sum(p.frames_by_dds for p in inputs)
    if by_dds:
        values.append(('transport_note', f'{by_dds} frames came by DDS, not shared memory: '
                       'their publisher is on another host, not this package, or uses '
                       'transport.same_host dds'))
    return values


def transport_loss_values(inputs: list[InputPort],
                          now_s: float) -> tuple[list[tuple[str, str]], Optional[str]]:
    """Diagnostic values of frames lost in transport, and the WARN text if too many."""
    lost = frames_lost_in_transport(inputs)
    if lost is None:
        why = MESSAGE_INFO_MISSING or 'the middleware gives no publication sequence numbers'
        return [(keys.FRAMES_LOST_IN_TRANSPORT, 'unknown'),
                ('transport_loss_counting', f'unavailable: {why}')], None
    warning = None
    for port in inputs:  # every window moves on, whichever warns first
        found = port.loss_warning(now_s)
        warning = warning or found
    middleware = sum(p.middleware_lost for p in inputs)
    overwritten = sum(max(0, p.loss.lost - p.middleware_lost) for p in inputs)
    return [(keys.FRAMES_LOST_IN_TRANSPORT, str(lost)),
            ('transport_loss_counting', 'publication sequence numbers'),
            ('frames_lost_by_middleware', str(middleware)),
            ('frames_overwritten_in_reader', str(overwritten))], warning


def frames_lost_in_transport(inputs: list[InputPort]) -> Optional[int]:
    """Frames DDS lost on the way to these inputs; None when it cannot tell."""
    trackers = [p.loss for p in inputs]
    if MESSAGE_INFO_MISSING or any(t.totals.without_info and not t.totals.received
                                   for t in trackers):
        return None
    return sum(t.lost for t in trackers)


def matched_values(inputs: list[InputPort], outputs: list[OutputPort]) -> list[tuple[str, str]]:
    """
    Return the DDS peers each topic of a node has matched (not merely discovered).

    A volatile sample published before the reader matched is gone without a trace, and
    matching between processes lags discovery under load: the split runner starts the
    camera only once every hop reports a match on both ends.
    """
    values = [(keys.matched_subscriptions(o.topic),
               str(o.ros_publisher.get_subscription_count()))
              for o in outputs if o.ros_publisher is not None]
    for port in inputs:
        count = port.publisher_count()
        if count is not None:
            values.append((keys.matched_publishers(port.topic), str(count)))
    return values


def counter_values(inputs: list[InputPort], outputs: list[OutputPort],
                   errors: int) -> list[tuple[str, str]]:
    """Frame counters over a node's inputs and outputs."""
    received = sum(p.stage_input.stats.received for p in inputs)
    processed = sum(p.stage_input.stats.processed for p in inputs)
    dropped = sum(p.stage_input.stats.dropped for p in inputs)
    # Frames replaced in shared memory before the stage took them: received and dropped
    # (keep-latest), exactly as a frame replaced in an in-process queue.
    same_host_dropped = sum(p.receiver.stats.dropped for p in inputs if p.receiver is not None)
    received, dropped = received + same_host_dropped, dropped + same_host_dropped
    return [(keys.FRAMES_RECEIVED, str(received)), ('frames_processed', str(processed)),
            (keys.FRAMES_DROPPED, str(dropped)), (keys.FRAME_ERRORS, str(errors)),
            (keys.FRAMES_PUBLISHED, str(max((o.stats.published for o in outputs), default=0))),
            ('messages_built', str(sum(o.stats.messages_built for o in outputs))),
            ('local_deliveries', str(sum(o.stats.local_deliveries for o in outputs)))]

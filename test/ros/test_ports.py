"""
Input and output ports: a same-host transport is one entry in ros/same_host.SAME_HOST.

A stand-in transport (frames handed over in this process's memory) is registered through the
mapping alone, and frames go through it between two real nodes in two rclpy contexts (two
"processes": separate DDS participants and local buses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.ros.compat import HAS_MATCHED_EVENT
from edge_infer_ros.ros.same_host import SAME_HOST
from rclpy.node import Node
from sensor_msgs.msg import Image
from support.stage_pair import camera_and_preprocess
from support.waiting import wait_for

#: Receivers of the stand-in transport by topic (its "shared memory").
_RECEIVERS: dict[str, list['_Receiver']] = {}


@dataclass
class _Stats:
    received: int = 0
    dropped: int = 0


class _Receiver:

    def __init__(self, topic: str, on_frame: Callable[[Envelope[Any], int], None]) -> None:
        self.topic = topic
        self.on_frame = on_frame
        self.stats = _Stats()
        self.closed = False

    def start(self) -> None:
        _RECEIVERS.setdefault(self.topic, []).append(self)

    def close(self) -> None:
        self.closed = True
        _RECEIVERS[self.topic].remove(self)


class _Sender:

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.sent = 0
        self.closed = False

    def subscribers(self) -> int:
        return len(_RECEIVERS.get(self.topic, ()))

    def accepts(self, payload: Any) -> bool:
        return True

    def send(self, envelope: Envelope[Any], loan: Any = None) -> bool:
        for receiver in list(_RECEIVERS.get(self.topic, ())):
            receiver.stats.received += 1
            receiver.on_frame(envelope, 0)
        self.sent += 1
        return True

    def loan(self, shape: tuple[int, ...], dtype: Any) -> Any:
        raise RuntimeError('the stand-in lends no samples')

    def housekeeping(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class StandIn:
    """A same-host transport with the methods ros/same_host.SameHostTransport names."""

    def unavailable_reason(self) -> Optional[str]:
        return None

    def sender(self, topic: str) -> _Sender:
        return _Sender(topic)

    def receiver(self, topic: str, on_frame: Callable[[Envelope[Any], int], None],
                 on_error: Callable[[str], None], on_malformed: Callable[[str], None]) -> Any:
        return _Receiver(topic, on_frame)


def test_a_transport_registered_in_the_mapping_carries_frames(
        ros_context, second_context, monkeypatch) -> None:
    monkeypatch.setitem(SAME_HOST, 'standin', StandIn)
    camera, preprocess, executors = camera_and_preprocess(ros_context, second_context,
                                                          'standin', frames=30, fps=30.0)
    try:
        assert preprocess.start()
        camera.trigger_configure()
        sender = camera.image_out.same_host
        assert isinstance(sender, _Sender) and not camera.ports.shm_note, camera.ports.shm_note
        receiver = preprocess.input_ports[0].receiver
        assert isinstance(receiver, _Receiver)
        camera.trigger_activate()
        stats = preprocess.inputs[0].stats

        def done() -> bool:
            for executor in executors:
                executor.spin_once(timeout_sec=0.01)
            return (stats.processed + stats.dropped >= 30 and not camera._running.is_set()
                    and preprocess.inputs[0].idle())
        assert wait_for(done, 30.0, interval=0.001), (stats, camera.image_out.stats)
        # Every frame went by the stand-in; none had to be built as a DDS message for it.
        assert sender.sent == 30 and receiver.stats.received == 30
        assert camera.image_out.stats.same_host_sent == 30
        assert camera.image_out.stats.messages_built == 0
        assert stats.received == 30 and stats.errors == 0
        values = {v.key: v.value for v in preprocess.stage_status().values}
        assert values['transport_same_host'] == 'standin'
        assert values['shm_frames_received'] == '30'
    finally:
        for node in (camera, preprocess):
            node.destroy_node()
    assert sender.closed and receiver.closed and not _RECEIVERS['/image_raw']


def test_a_subscription_that_matches_mid_run_gets_frames(ros_context, second_context) -> None:
    """
    A running output learns of a new subscription from the matched event.

    Where rclpy has no such event (Humble), from its counts growing old instead.
    """
    camera, preprocess, executors = camera_and_preprocess(ros_context, second_context, 'dds',
                                                          frames=0, fps=30.0)
    outside = Node('outside_viewer', context=second_context)
    seen: list[int] = []
    try:
        camera.trigger_configure()
        if HAS_MATCHED_EVENT:
            camera.image_out.counts_max_age_s = 3600.0  # only the event can make it read again
        camera.trigger_activate()
        out = camera.image_out
        assert wait_for(lambda: out.stats.published >= 5, 10.0, executor=executors[0])
        assert out.stats.messages_built == 0  # nobody outside yet
        outside.create_subscription(Image, '/image_raw', lambda msg: seen.append(msg.width), 10)
        executors[1].add_node(outside)

        def frames_seen() -> bool:
            executors[1].spin_once(timeout_sec=0.01)
            return len(seen) >= 3
        assert wait_for(frames_seen, 15.0, executor=executors[0]), out.stats
        assert set(seen) == {640}
    finally:
        outside.destroy_node()
        camera.destroy_node()
        preprocess.destroy_node()

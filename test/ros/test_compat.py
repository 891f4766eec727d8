"""
The rclpy compatibility layer's fallbacks, run on whatever rclpy is installed.

Each fallback is what Humble uses; testing it here on Jazzy/Kilted too means a broken fallback
fails every CI run, not only the simulated-Humble one.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

from edge_infer_ros.ros import compat
from edge_infer_ros.ros.compat import (emulate_post_set_parameters_callback,
                                       list_parameters_of, ParameterServicesClient)
import pytest
from rcl_interfaces.srv import ListParameters
from rclpy.clock import ClockType
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from support.waiting import wait_for

RECURSIVE = ListParameters.Request.DEPTH_RECURSIVE
NAMES = ['rate', 'budget_ms.detector', 'budget_ms.nms', 'qos.input.depth', 'qos.output.depth']


class Served:
    """A node with parameters, spun by its own executor thread (another 'process')."""

    def __init__(self, context: Context) -> None:
        self.node = Node('served', context=context)
        self.node.declare_parameter('rate', 30.0)
        self.node.declare_parameter('budget_ms.detector', 8.0)
        self.node.declare_parameter('budget_ms.nms', 1.0)
        self.node.declare_parameter('qos.input.depth', 5)
        self.node.declare_parameter('qos.output.depth', 10)
        self.node.add_on_set_parameters_callback(self._check)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    @staticmethod
    def _check(parameters: list[Parameter]) -> Any:
        from rcl_interfaces.msg import SetParametersResult
        bad = [p.name for p in parameters if p.name == 'rate' and p.value <= 0.0]
        return SetParametersResult(successful=not bad, reason='rate must be > 0' if bad else '')

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def served(ros_context: Context) -> Iterator[Served]:
    instance = Served(ros_context)
    yield instance
    instance.close()


def test_emulated_post_set_callback_sees_stored_values_and_skips_refused(
        ros_context: Context) -> None:
    node = Node('post_set', context=ros_context)
    try:
        node.declare_parameter('rate', 30.0)
        node.add_on_set_parameters_callback(Served._check)
        seen: list[tuple[str, Any, Any]] = []
        emulate_post_set_parameters_callback(
            node, lambda ps: seen.extend((p.name, p.value, node.get_parameter(p.name).value)
                                         for p in ps))
        assert node.set_parameters([Parameter('rate', value=15.0)])[0].successful
        assert seen == [('rate', 15.0, 15.0)]  # called after the value was stored
        assert not node.set_parameters([Parameter('rate', value=-1.0)])[0].successful
        assert not node.set_parameters_atomically([Parameter('rate', value=0.0)]).successful
        assert seen == [('rate', 15.0, 15.0)]  # refused changes are not reported
        assert node.set_parameters_atomically([Parameter('rate', value=5.0)]).successful
        assert seen[-1] == ('rate', 5.0, 5.0)
    finally:
        node.destroy_node()


def test_emulated_post_set_callback_runs_for_changes_through_the_services(
        served: Served, second_context: Context) -> None:
    seen: list[str] = []
    emulate_post_set_parameters_callback(served.node, lambda ps: seen.extend(p.name for p in ps))
    outside = Node('outside', context=second_context)
    executor = SingleThreadedExecutor(context=second_context)
    executor.add_node(outside)
    try:
        client = ParameterServicesClient(outside, 'served')
        assert client.wait_for_services(timeout_sec=10.0)
        future = client.set_parameters([Parameter('budget_ms.detector', value=12.0),
                                        Parameter('rate', value=-3.0)])
        assert wait_for(future.done, 10.0, executor=executor)
        ok, refused = future.result().results
        assert ok.successful and not refused.successful and 'rate' in refused.reason
        assert seen == ['budget_ms.detector']
        assert served.node.get_parameter('budget_ms.detector').value == 12.0
        future = client.get_parameters(['budget_ms.detector', 'rate'])
        assert wait_for(future.done, 10.0, executor=executor)
        assert [v.double_value for v in future.result().values] == [12.0, 30.0]
        future = client.list_parameters(['budget_ms'], 2)
        assert wait_for(future.done, 10.0, executor=executor)
        assert sorted(future.result().result.names) == ['budget_ms.detector', 'budget_ms.nms']
    finally:
        executor.shutdown()
        outside.destroy_node()


def test_parameter_client_fallback_refuses_to_wait_forever(ros_context: Context) -> None:
    node = Node('lonely', context=ros_context)
    try:
        assert not ParameterServicesClient(node, 'nobody_here').wait_for_services(0.3)
    finally:
        node.destroy_node()


@pytest.mark.parametrize(('prefixes', 'depth', 'names', 'prefixes_out'), [
    ([], 0, NAMES, ['budget_ms', 'qos.input', 'qos.output']),
    ([], 1, ['rate'], []),
    ([], 2, ['rate', 'budget_ms.detector', 'budget_ms.nms'], ['budget_ms']),
    (['budget_ms'], RECURSIVE, ['budget_ms.detector', 'budget_ms.nms'], ['budget_ms']),
    (['qos'], RECURSIVE, ['qos.input.depth', 'qos.output.depth'],
     ['qos.input', 'qos', 'qos.output']),
    (['ra'], 1, ['rate'], []),
])
def test_listing_fallback_follows_the_list_parameters_service(
        prefixes: list[str], depth: int, names: list[str], prefixes_out: list[str]) -> None:
    result = list_parameters_of(NAMES, prefixes, depth)
    assert sorted(result.names) == sorted(names)
    assert sorted(result.prefixes) == sorted(prefixes_out)


@pytest.mark.skipif(not compat.HAS_LIST_PARAMETERS, reason='this rclpy has no list_parameters')
@pytest.mark.parametrize(('prefixes', 'depth'), [
    ([], 0), ([], 1), (['budget_ms'], RECURSIVE), (['qos'], RECURSIVE)])
def test_listing_fallback_names_agree_with_rclpy(served: Served, prefixes: list[str],
                                                 depth: int) -> None:
    # Names agree; Humble's service also lists the requested prefix among the prefixes and
    # counts depth from the root, not from the prefix: the fallback keeps Humble's answer.
    native = served.node.list_parameters(prefixes, depth)
    fallback = list_parameters_of(served.node.get_parameters_by_prefix(''), prefixes, depth)
    assert sorted(fallback.names) == sorted(native.names)
    assert set(native.prefixes) <= set(fallback.prefixes)


def test_compat_names_are_the_native_ones_where_they_exist() -> None:
    import rclpy.node
    assert compat.HAS_POST_SET_PARAMETERS_CALLBACK == hasattr(
        rclpy.node.Node, 'add_post_set_parameters_callback')
    try:
        from rclpy.event_handler import SubscriptionEventCallbacks
    except ImportError:
        from rclpy.qos_event import SubscriptionEventCallbacks
    assert compat.SubscriptionEventCallbacks is SubscriptionEventCallbacks
    if compat.HAS_PARAMETER_CLIENT:
        from rclpy.parameter_client import AsyncParameterClient
        assert compat.AsyncParameterClient is AsyncParameterClient
    else:
        assert compat.AsyncParameterClient is ParameterServicesClient


def test_ros_time_reader_follows_use_sim_time_switched_on_and_off(ros_context: Context) -> None:
    node = Node('clocked', context=ros_context)
    try:
        read = compat.ros_time_reader(node.get_clock())
        assert abs(read() - time.time_ns()) < 1_000_000_000  # the system clock
        node.set_parameters([Parameter('use_sim_time', value=True)])
        node.get_clock().set_ros_time_override(Time(seconds=5, clock_type=ClockType.ROS_TIME))
        assert read() == 5_000_000_000  # /clock's time, told by the activation callback
        node.set_parameters([Parameter('use_sim_time', value=False)])
        assert abs(read() - time.time_ns()) < 1_000_000_000
    finally:
        node.destroy_node()

"""
Where rclpy differs between the supported distributions, one name for the package to use.

Humble (rclpy 3.3) lacks APIs that Iron and later added, and renamed one module. Each choice here
is made by looking for the feature, never by reading a distribution name, so a distribution
that backports a feature gets the native one:

- the QoS event callback classes live in ``rclpy.event_handler`` (Iron+, rclpy#1058) or in
  ``rclpy.qos_event`` (Humble; kept as a deprecated alias later);
- a publisher's ``matched`` event (Iron+): :func:`publisher_events` leaves it out on Humble;
- ``Node.add_post_set_parameters_callback`` (Iron+, rclpy#966): emulated on Humble around the
  two public setters that every parameter change goes through (Humble's parameter services call
  ``set_parameters_atomically``; ``set_parameters`` is the in-process one);
- ``rclpy.parameter_client.AsyncParameterClient`` (Iron+): a small client of the standard
  parameter services with the same calls the package and its tests use;
- ``Node.list_parameters`` (Jazzy+): Humble's parameter service's own listing, on the node's
  declared names;
- ``LifecycleNode.destroy_node`` leaves the node's lifecycle state machine (in every rclpy
  checked, Humble to Kilted): see :func:`release_lifecycle_state_machine`.

Every fallback is a public function or class here so that tests can run it on any distribution,
not only where it is needed.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, List, Optional, Sequence

from rcl_interfaces.msg import ListParametersResult
from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
from rclpy.clock import ClockChange, JumpThreshold, ROSClock, TimeJump
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future

try:  # Iron and later
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
    HAS_EVENT_HANDLER_MODULE = True
except ImportError:  # Humble: the same classes under their first module name
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks
    HAS_EVENT_HANDLER_MODULE = False

try:  # Iron and later
    from rclpy.parameter_client import AsyncParameterClient as _NativeParameterClient
except ImportError:  # Humble
    _NativeParameterClient = None  # type: ignore[misc]

__all__ = ['AsyncParameterClient', 'add_post_set_parameters_callback', 'HAS_MATCHED_EVENT',
           'emulate_post_set_parameters_callback', 'HAS_EVENT_HANDLER_MODULE',
           'HAS_LIST_PARAMETERS', 'HAS_PARAMETER_CLIENT', 'HAS_POST_SET_PARAMETERS_CALLBACK',
           'list_parameters', 'list_parameters_of', 'ParameterServicesClient',
           'publisher_events', 'PublisherEventCallbacks', 'SubscriptionEventCallbacks']

PostSetCallback = Callable[[List[Parameter]], None]

HAS_POST_SET_PARAMETERS_CALLBACK = hasattr(Node, 'add_post_set_parameters_callback')
HAS_LIST_PARAMETERS = hasattr(Node, 'list_parameters')
HAS_PARAMETER_CLIENT = _NativeParameterClient is not None


def _has_matched_event() -> bool:
    try:
        PublisherEventCallbacks(matched=None)
    except TypeError:
        return False
    return True


HAS_MATCHED_EVENT = _has_matched_event()


def publisher_events(incompatible_qos: Callable[[Any], None],
                     matched: Callable[[Any], None]) -> PublisherEventCallbacks:
    """
    Return a publisher's event callbacks; ``matched`` only where rclpy has that event.

    Without it (Humble) a publisher learns of a new subscription only by asking again.
    """
    if HAS_MATCHED_EVENT:
        return PublisherEventCallbacks(incompatible_qos=incompatible_qos, matched=matched)
    return PublisherEventCallbacks(incompatible_qos=incompatible_qos)


#: Attribute of a node holding the emulated post-set callbacks (Humble only).
_POST_SET_ATTR = '_eir_post_set_parameters_callbacks'


def add_post_set_parameters_callback(node: Node, callback: PostSetCallback) -> None:
    """Call ``callback(parameters)`` after parameters were set successfully on ``node``."""
    if HAS_POST_SET_PARAMETERS_CALLBACK:
        node.add_post_set_parameters_callback(callback)
    else:
        emulate_post_set_parameters_callback(node, callback)


def emulate_post_set_parameters_callback(node: Node, callback: PostSetCallback) -> None:
    """
    Emulate ``add_post_set_parameters_callback`` for an rclpy that lacks it (Humble).

    Wraps the node's two public setters on the instance: ``set_parameters`` (in-process) and
    ``set_parameters_atomically`` (what Humble's parameter services call for ``ros2 param set``
    and every parameter client). The callback gets the parameters that were set, after they
    were stored, as on Iron+. Callbacks run most recent first, like rclpy's own.
    """
    callbacks: Optional[list[PostSetCallback]] = getattr(node, _POST_SET_ATTR, None)
    if callbacks is None:
        callbacks = []
        setattr(node, _POST_SET_ATTR, callbacks)
        set_each = node.set_parameters
        set_atomically = node.set_parameters_atomically

        def set_parameters(parameter_list: List[Parameter]) -> list[Any]:
            results = set_each(parameter_list)
            done = [p for p, r in zip(parameter_list, results) if r.successful]
            if done:
                for hook in list(callbacks):
                    hook(done)
            return results

        def set_parameters_atomically(parameter_list: List[Parameter]) -> Any:
            result = set_atomically(parameter_list)
            if result.successful and parameter_list:
                for hook in list(callbacks):
                    hook(list(parameter_list))
            return result

        node.set_parameters = set_parameters  # type: ignore[method-assign]
        node.set_parameters_atomically = set_parameters_atomically  # type: ignore
    callbacks.insert(0, callback)


def list_parameters(node: Node, prefixes: Sequence[str] = (),
                    depth: int = 0) -> ListParametersResult:
    """List the node's parameters natively (Jazzy+), or as Humble's parameter service does."""
    if HAS_LIST_PARAMETERS:
        return node.list_parameters(list(prefixes), depth)
    return list_parameters_of(node.get_parameters_by_prefix(''), prefixes, depth)


def list_parameters_of(names: Iterable[str], prefixes: Sequence[str] = (),
                       depth: int = 0) -> ListParametersResult:
    """List parameter names by prefix and depth as Humble's ``ListParameters`` service does."""
    separator = '.'
    result = ListParametersResult()
    nested = []
    for name in names:
        if separator in name:
            nested.append(name)
        elif prefixes:
            result.names.extend(name for prefix in prefixes if name.startswith(prefix))
        else:
            result.names.append(name)
    if depth == 1:
        return result
    if depth != ListParameters.Request.DEPTH_RECURSIVE:
        nested = [n for n in nested if n.count(separator) < depth]
    for name in nested:
        parent = separator.join(name.split(separator)[:-1])
        if prefixes:
            for prefix in prefixes:
                if name.startswith(prefix + separator):
                    result.names.append(name)
                    for known in (parent, prefix):
                        if known not in result.prefixes:
                            result.prefixes.append(known)
        else:
            if parent not in result.prefixes:
                result.prefixes.append(parent)
            result.names.append(name)
    return result


class ParameterServicesClient:
    """
    The part of ``AsyncParameterClient`` the package uses, on the standard parameter services.

    Works on every distribution (the services are the same since Foxy); used where
    ``rclpy.parameter_client`` is missing. Replies come through the caller's executor.
    """

    def __init__(self, node: Node, remote_node_name: str) -> None:
        self.remote_node_name = remote_node_name
        self._set: Any = node.create_client(SetParameters, f'{remote_node_name}/set_parameters')
        self._get: Any = node.create_client(GetParameters, f'{remote_node_name}/get_parameters')
        self._list: Any = node.create_client(ListParameters,
                                             f'{remote_node_name}/list_parameters')

    def services_are_ready(self) -> bool:
        """Return whether the remote node's parameter services are there."""
        return all(c.service_is_ready() for c in (self._set, self._get, self._list))

    def wait_for_services(self, timeout_sec: Optional[float] = None) -> bool:
        """Wait until the services are there; False after ``timeout_sec``."""
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        for client in (self._set, self._get, self._list):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not client.wait_for_service(timeout_sec=left):
                return False
        return True

    def set_parameters(self, parameters: Sequence[Parameter]) -> Future:
        """Set parameters one by one; the future's result is a ``SetParameters.Response``."""
        request = SetParameters.Request()
        request.parameters = [p.to_parameter_msg() for p in parameters]
        return self._set.call_async(request)

    def get_parameters(self, names: Sequence[str]) -> Future:
        """Get parameter values; the future's result is a ``GetParameters.Response``."""
        return self._get.call_async(GetParameters.Request(names=list(names)))

    def list_parameters(self, prefixes: Optional[Sequence[str]] = None,
                        depth: Optional[int] = None) -> Future:
        """List parameter names; the future's result is a ``ListParameters.Response``."""
        request = ListParameters.Request()
        if prefixes:
            request.prefixes = list(prefixes)
        if depth is not None:
            request.depth = depth
        return self._list.call_async(request)


#: rclpy's client where it exists, else the fallback above (same calls, same replies).
AsyncParameterClient: Any = _NativeParameterClient or ParameterServicesClient


def parameter_overrides(node: Node, prefix: str) -> dict[str, Any]:
    """
    Return the values a parameter file or ``-p`` gave for names under ``prefix``.

    A node can declare parameters whose names the file chooses (a camera's section of the
    budget file) only by reading its overrides before declaring. rclpy keeps them in
    ``Node._parameter_overrides`` on every distribution from Humble to Kilted and has no public
    getter (``automatically_declare_parameters_from_overrides`` would declare them without
    descriptors); without the attribute, no such section is read.
    """
    overrides = getattr(node, '_parameter_overrides', None) or {}
    return {name: param.value for name, param in overrides.items() if name.startswith(prefix)}


def ros_time_reader(clock: Any) -> Callable[[], int]:
    """Read a node's ROS clock: /clock under use_sim_time, else the system clock directly."""
    if not isinstance(clock, ROSClock):
        return lambda: clock.now().nanoseconds
    return _RosTime(clock).now_ns


class _RosTime:
    """
    A ROS clock read the cheap way while no /clock overrides it.

    Without an override ROS time is the system time, and ``time.time_ns`` skips building a Time
    object. Whether an override is on is learned from the clock's activation callback, not asked
    per reading: the property goes through the clock's handle, costly on the first reading
    after an idle period, which every stage pays on every frame (``bench/cold_calls.py``).
    """

    def __init__(self, clock: ROSClock) -> None:
        self._clock = clock
        self._override = clock.ros_time_is_active
        self._jump_handle = clock.create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=None, on_clock_change=True),
            post_callback=self._on_clock_change)

    def _on_clock_change(self, jump: TimeJump) -> None:
        if jump.clock_change == ClockChange.ROS_TIME_ACTIVATED:
            self._override = True
        elif jump.clock_change == ClockChange.ROS_TIME_DEACTIVATED:
            self._override = False

    def now_ns(self) -> int:
        """Return the node's ROS time, ns."""
        return self._clock.now().nanoseconds if self._override else time.time_ns()


def release_lifecycle_state_machine(node: Any) -> None:
    """
    Destroy a destroyed lifecycle node's state machine, which rclpy leaves behind.

    The state machine holds the node's handle, so the rcl node outlives ``destroy_node``; the
    DDS participant is then never destroyed, and Fast DDS leaves its shared-memory segment
    (35 MB with the shipped profile) in ``/dev/shm`` when the process exits, one per process
    per run, until the machine restarts.
    """
    state_machine = getattr(node, '_state_machine', None)
    destroy = getattr(state_machine, 'destroy_when_not_in_use', None)
    if destroy is not None:
        destroy()

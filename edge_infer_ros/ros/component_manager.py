"""
The container's component manager: composition_interfaces' services, as rclcpp_components has.

``ros2 component load/unload/list`` and launch_ros' ``ComposableNodeContainer`` /
``LoadComposableNodes`` talk to a container through ``~/_container/load_node``,
``~/_container/unload_node`` and ``~/_container/list_nodes``. This module serves them on the
container's own node with rclcpp_components' semantics: unique ids counted from 1, full node
names in the answers, failures as ``success: false`` with the reason in ``error_message``, the
request's node name, namespace, remap rules, parameters and the extra arguments
``forward_global_arguments``, ``use_intra_process_comms`` and ``enable_rosout`` honoured.

A request is untrusted input: only this package's own plugins (its ``edge_infer_ros.components``
entry points) are ever loaded, never an import path named in a request, and the number of
loaded components is bounded.

``ros2 component types`` reads the ament index resource ``rclcpp_components``, whose entries
name a shared library that an rclcpp container dlopens. The package registers nothing there:
an rclcpp container asked for one of these Python plugins would then fail with a misleading
library error. ``component_container --list-types`` prints the plugins instead.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from edge_infer_ros.ros.container import ComponentSpec, Container, settle_heap
from edge_infer_ros.ros.graph import COMPONENT_GROUP, load_plugin
from edge_infer_ros.ros.process import stop_nodes
from rclpy.node import Node
from rclpy.parameter import Parameter

PACKAGE = 'edge_infer_ros'
#: At most this many components in one container: a request storm must not grow it unbounded.
MAX_COMPONENTS = 64
#: rcl_interfaces/Log levels a load request may ask for (0: leave the node's level alone).
LOG_LEVELS = (0, 10, 20, 30, 40, 50)
#: Extra arguments of rclcpp_components that mean something here; all are booleans.
EXTRA_ARGUMENTS = ('forward_global_arguments', 'use_intra_process_comms', 'enable_rosout')


class LoadRefused(Exception):
    """A load request this container does not carry out (the message says why)."""


def spec_from_request(request: Any) -> tuple[ComponentSpec, int]:
    """Turn a LoadNode request into what Container.load takes, or raise LoadRefused."""
    if request.package_name != PACKAGE:
        raise LoadRefused(f'this container loads only {PACKAGE} plugins, not package '
                          f'{request.package_name!r}')
    try:
        node_class = load_plugin(request.plugin_name)
    except LookupError as error:
        raise LoadRefused(f'Failed to find class with the requested plugin name: '
                          f'{error}') from None
    if request.log_level not in LOG_LEVELS:
        raise LoadRefused(f'log_level must be one of {LOG_LEVELS}, got {request.log_level}')
    remaps = []
    for rule in request.remap_rules:
        source, separator, target = rule.partition(':=')
        if not separator or not source or not target:
            raise LoadRefused(f'remap rule {rule!r} is not FROM:=TO')
        remaps.append((source, target))
    extra: dict[str, bool] = {}
    for message in request.extra_arguments:
        argument = Parameter.from_parameter_msg(message)
        if argument.name not in EXTRA_ARGUMENTS:
            raise LoadRefused(f'unknown extra argument {argument.name!r} (known: '
                              f'{", ".join(EXTRA_ARGUMENTS)})')
        if not isinstance(argument.value, bool):
            raise LoadRefused(f'extra argument {argument.name} must be a bool, got '
                              f'{argument.value!r}')
        extra[argument.name] = argument.value
    overrides = tuple(Parameter.from_parameter_msg(m) for m in request.parameters)
    name = request.node_name or getattr(node_class, 'DEFAULT_NAME', '') or \
        request.plugin_name.split('::')[-1].lower()
    spec = ComponentSpec(request.plugin_name, name, request.node_namespace, tuple(remaps),
                         overrides=overrides,
                         use_global_arguments=extra.get('forward_global_arguments', False),
                         enable_rosout=extra.get('enable_rosout', True))
    return spec, request.log_level


class ComponentManager:
    """Serves load_node, unload_node and list_nodes for a Container on its own node."""

    def __init__(self, node: Node, container: Container,
                 report: Optional[Callable[[str], None]] = None) -> None:
        # composition_interfaces is part of every ROS install, but not of the PyPI wheels:
        # the caller handles the ImportError (the container then works without the services).
        from composition_interfaces.srv import ListNodes, LoadNode, UnloadNode

        self.node = node
        self.container = container
        self._report = report or (lambda text: node.get_logger().error(text))
        self._next_id = 1
        self.loaded: dict[int, Any] = {}
        for loaded in container.nodes:  # components given on the command line
            self._register(loaded)
        node.create_service(LoadNode, '~/_container/load_node', self._load)
        node.create_service(UnloadNode, '~/_container/unload_node', self._unload)
        node.create_service(ListNodes, '~/_container/list_nodes', self._list)

    def _register(self, loaded: Any) -> int:
        unique_id = self._next_id
        self._next_id += 1
        self.loaded[unique_id] = loaded
        return unique_id

    def _load(self, request: Any, response: Any) -> Any:
        try:
            response.full_node_name, response.unique_id = self.load(request)
            response.success = True
        except Exception as error:  # noqa: B902 - every failure is the answer, not a crash
            response.success = False
            response.error_message = str(error) if isinstance(error, LoadRefused) else \
                f'{type(error).__name__}: {error}'
            self.node.get_logger().error(
                f'cannot load {request.plugin_name} as {request.node_name!r}: '
                f'{response.error_message}')
        return response

    def load(self, request: Any) -> tuple[str, int]:
        """Load, configure and activate (autostart) one component; its name and id."""
        if len(self.loaded) >= MAX_COMPONENTS:
            raise LoadRefused(f'this container holds {MAX_COMPONENTS} components already')
        spec, log_level = spec_from_request(request)
        namespace = '/' + spec.namespace.strip('/') if spec.namespace.strip('/') else ''
        if not any(source in ('__node', '__ns', '__name') for source, _ in spec.remaps) and \
                any(n.get_fully_qualified_name() == f'{namespace}/{spec.name}'
                    for n in self.loaded.values()):
            raise LoadRefused(f'a node named {namespace}/{spec.name} is loaded already')
        loaded = self.container.load(spec)
        full_name = loaded.get_fully_qualified_name()
        problem = ''
        if any(n.get_fully_qualified_name() == full_name for n in self.loaded.values()):
            problem = f'a node named {full_name} is loaded already'
        elif log_level:
            loaded.get_logger().set_level(log_level)
        if not problem and getattr(loaded, 'p', {}).get('autostart', False) \
                and not loaded.start():
            problem = f'{full_name} did not start: {loaded.last_error}'
        if problem:
            self._drop(loaded)
            raise LoadRefused(problem)
        unique_id = self._register(loaded)
        settle_heap()
        self.node.get_logger().info(f'loaded {spec.plugin} as {full_name} (id {unique_id})')
        return full_name, unique_id

    def _drop(self, loaded: Any) -> None:
        self.container.executor.remove_node(loaded)
        if loaded in self.container.nodes:
            self.container.nodes.remove(loaded)
        stop_nodes([loaded], self._report)

    def _unload(self, request: Any, response: Any) -> Any:
        loaded = self.loaded.pop(request.unique_id, None)
        if loaded is None:
            response.success = False
            response.error_message = f'No node found with unique_id: {request.unique_id}'
            return response
        full_name = loaded.get_fully_qualified_name()
        self._drop(loaded)
        self.node.get_logger().info(f'unloaded {full_name} (id {request.unique_id})')
        response.success = True
        return response

    def _list(self, request: Any, response: Any) -> Any:
        response.full_node_names = [n.get_fully_qualified_name() for n in self.loaded.values()]
        response.unique_ids = list(self.loaded)
        return response


def plugin_types() -> str:
    """List the loadable plugins the way ``ros2 component types`` prints a package."""
    from importlib.metadata import entry_points
    names = sorted(e.name for e in entry_points(group=COMPONENT_GROUP))
    return '\n'.join([PACKAGE] + [f'  {name}' for name in names])

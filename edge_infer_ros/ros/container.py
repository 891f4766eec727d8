r"""
Component container: any set of the stage nodes in one process and one executor.

rclpy has no component container of its own, so this one loads nodes by plugin name
(setuptools entry points of the group ``edge_infer_ros.components``), each with its own name,
namespace, remaps and parameters, like rclcpp_components. Nodes in one container hand frames
to each other by reference (see :mod:`edge_infer_ros.core.handoff`).

Usage::

    ros2 run edge_infer_ros component_container --params-file pipeline.yaml \\
        edge_infer_ros::Camera:camera edge_infer_ros::Preprocess:preprocess ...

Global ROS arguments (``--ros-args --params-file f -r a:=b``, what ``ros2 launch`` passes)
apply to every component, as in rclcpp's container; parameter files are keyed by node name.

or with a composition file (YAML list of {plugin, name, namespace, remaps, parameters,
param_files}): ``component_container --composition nodes.yaml``.

Started with no components, it is a component manager like rclcpp's ``component_container``:
``ros2 component load`` and launch_ros' ``ComposableNodeContainer`` load the package's plugins
into it (see :mod:`edge_infer_ros.ros.component_manager`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import gc
import sys
import threading
from typing import Any, Optional, Sequence

from edge_infer_ros.ros import process
from edge_infer_ros.ros.graph import load_plugin
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
import yaml


@dataclass
class ComponentSpec:
    """What to load: a plugin under a name, with its remaps and parameters."""

    plugin: str
    name: str
    namespace: str = ''
    remaps: Sequence[tuple[str, str]] = ()
    param_files: Sequence[str] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    #: rclpy Parameters that win over everything else (what a LoadNode request carries)
    overrides: Sequence[Any] = ()
    #: whether the process's global ROS arguments (--ros-args of the container) apply
    use_global_arguments: bool = True
    enable_rosout: bool = True


def node_arguments(spec: ComponentSpec) -> list[str]:
    """Return the node-specific ROS arguments of a component (name, remaps, files, values)."""
    # Node-local name and namespace remaps win over the container's global ones (what
    # ros2 launch gives a ComposableNodeContainer), which would otherwise rename every node.
    args = ['--ros-args', '-r', f'__node:={spec.name}']
    if spec.namespace:
        args += ['-r', f'__ns:=/{spec.namespace.strip("/")}']
    for source, target in spec.remaps:
        args += ['-r', f'{source}:={target}']
    for path in spec.param_files:
        args += ['--params-file', str(path)]
    for name, value in spec.parameters.items():
        args += ['-p', f'{name}:={yaml.safe_dump(value, default_flow_style=True).strip()}'
                 .replace('\n...', '')]
    return args


#: GIL switch interval of a container process. Python's default (5 ms) lets any thread that
#: runs Python code (diagnostics, a parameter callback) hold back a waiting stage thread for
#: up to 5 ms; 0.5 ms bounds that wait at a small cost in switching overhead.
GIL_SWITCH_INTERVAL_S = 0.0005


def settle_heap() -> None:
    """
    Collect once, then move every object alive now out of the garbage collector's reach.

    Called once the stages are configured, before frames flow: a full collection walks every
    object of the process (modules, message types, the model's metadata), and one that runs
    while a frame is in flight holds the GIL, and with it every stage, for tens of
    milliseconds. Frozen, those objects are never walked again; per-frame garbage is still
    collected as before. Each call first unfreezes, so that what an unloaded component left
    behind is collected too.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Container:
    """Loads components into one context and one executor, and drives their lifecycle."""

    def __init__(self, context: Optional[Context] = None,
                 gil_switch_interval_s: Optional[float] = GIL_SWITCH_INTERVAL_S) -> None:
        if gil_switch_interval_s is not None:
            sys.setswitchinterval(gil_switch_interval_s)
        self.context = context
        #: the loaded stage nodes (StageNode subclasses, each with its own counters)
        self.nodes: list[Any] = []
        self.executor = SingleThreadedExecutor(context=context)
        self._spin_thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    def load(self, spec: ComponentSpec) -> Any:
        """Instantiate one component (its parameters declared, not yet configured)."""
        node_class = load_plugin(spec.plugin)
        node = node_class(spec.name, namespace=spec.namespace or None, context=self.context,
                          cli_args=node_arguments(spec),
                          use_global_arguments=spec.use_global_arguments,
                          enable_rosout=spec.enable_rosout,
                          parameter_overrides=list(spec.overrides) or None)
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def start(self) -> list[str]:
        """
        Configure every autostart node, then activate them from the last stage to the first.

        Downstream first: by the time the camera produces its first frame every input is
        attached, so no frame is lost at start. Returns the problems met (empty when fine).
        """
        problems = []
        managed = [n for n in self.nodes if getattr(n, 'p', {}).get('autostart', False)]
        for node in managed:
            node.trigger_configure()
            if not node.configured:
                problems.append(f'{node.get_fully_qualified_name()}: {node.last_error}')
        settle_heap()
        for node in reversed(managed):
            if node.configured:
                node.trigger_activate()
                if not node.active:
                    problems.append(f'{node.get_fully_qualified_name()}: {node.last_error}')
        return problems

    def spin_in_background(self) -> None:
        """Run the executor (parameters, services, DDS inputs) on a thread of its own."""
        def spin() -> None:
            try:
                self.executor.spin()
            except ExternalShutdownException:
                pass
            except Exception:  # noqa: B902
                # shutdown() destroys the executor's own guard condition while a callback
                # may still be finishing here (rclpy then raises InvalidHandle): expected
                # then, and no traceback for the user; at any other time a real failure.
                if not self._stopping.is_set():
                    raise
        self._spin_thread = threading.Thread(target=spin, name='eir:executor', daemon=True)
        self._spin_thread.start()

    def shutdown(self) -> None:
        """
        Stop the executor, then the cameras, then everything else, and destroy the nodes.

        The executor goes first: destroying a node while another thread still builds wait
        sets from its subscriptions and events makes that thread fail on the destroyed handles.
        No lifecycle transitions here: on Ctrl-C or SIGTERM the context may already be shut
        down; destroy_node() of a stage stops its threads and frees its resources directly.
        """
        self._stopping.set()
        self.executor.shutdown(timeout_sec=1.0)
        if self._spin_thread is not None:
            self._spin_thread.join(timeout=2.0)
        cameras = [n for n in self.nodes if getattr(n, 'STAGE', '') == 'camera']
        others = [n for n in reversed(self.nodes) if n not in cameras]
        for node in cameras + others:
            try:
                node.destroy_node()
            except Exception as error:  # noqa: B902 - keep shutting the others down
                print(f'[component_container] {node.get_name()}: {error}', file=sys.stderr)
        self.nodes.clear()


def parse_component(text: str, namespace: str, param_files: Sequence[str]) -> ComponentSpec:
    """
    Parse ``plugin[:name]`` from the command line.

    Plugin names contain ``::`` themselves (``edge_infer_ros::Camera``), so only a single
    colon after the last ``::`` separates the node name.
    """
    head, separator, tail = text.rpartition(':')
    if separator and '::' in head and not head.endswith(':'):
        plugin, name = head, tail
    else:
        plugin, name = text, ''
    default = plugin.split('::')[-1].lower()
    return ComponentSpec(plugin, name or default, namespace, (), tuple(param_files))


def read_composition(path: str) -> list[ComponentSpec]:
    """Read a composition file: a YAML list of components."""
    with open(path, encoding='utf-8') as stream:
        entries = yaml.safe_load(stream) or []
    specs = []
    for entry in entries:
        remaps = tuple(tuple(pair) for pair in entry.get('remaps', []))
        specs.append(ComponentSpec(entry['plugin'], entry['name'], entry.get('namespace', ''),
                                   remaps, tuple(entry.get('param_files', [])),
                                   dict(entry.get('parameters', {}))))
    return specs


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point of ``component_container``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = process.refuse_bad_ros_arguments('component_container', ['container'] + argv)[1:]
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('components', nargs='*', help='plugin[:name], e.g. '
                        'edge_infer_ros::Detector:detector')
    parser.add_argument('--composition', help='YAML list of components to load')
    parser.add_argument('--namespace', default='', help='namespace of the components')
    parser.add_argument('--params-file', action='append', default=[],
                        help='parameter file given to every component')
    parser.add_argument('--list-types', action='store_true',
                        help='print the plugins this container loads, then exit')
    options = parser.parse_args([a for a in ros_args if a != '--'])
    process.refuse_bad_param_files('component_container', options.params_file)
    if options.list_types:
        from edge_infer_ros.ros.component_manager import plugin_types
        print(plugin_types())
        return
    specs = [parse_component(c, options.namespace, options.params_file)
             for c in options.components]
    if options.composition:
        specs += read_composition(options.composition)
    stop = process.init(argv)
    container = Container()
    # The container's own node: its name is what ros2 launch / ros2 component address.
    own = Node('component_container', context=container.context)
    container.executor.add_node(own)
    spin_thread = None
    failed = False
    try:
        for spec in specs:
            container.load(spec)
        try:
            from edge_infer_ros.ros.component_manager import ComponentManager
            ComponentManager(own, container)
        except ImportError as error:
            own.get_logger().warning(
                f'no composition_interfaces ({error}): ros2 component and launch_ros '
                'ComposableNodeContainer cannot load nodes into this container')
        for problem in container.start():
            print(f'[component_container] {problem}', file=sys.stderr)
        spin_thread = process.spin_in_thread(container.executor, stop)
        stop.wait()
    except Exception as error:  # noqa: B902 - a clear message and exit code 1, no traceback
        print(f'[component_container] {type(error).__name__}: {error}', file=sys.stderr)
        failed = True
    finally:
        process.finish(container.executor, spin_thread, container.nodes + [own])
        container.nodes.clear()
    if failed or stop.failed:
        sys.exit(1)


if __name__ == '__main__':
    main()

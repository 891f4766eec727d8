r"""
The ``component_container`` executable: stage nodes loaded into one process.

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
import sys
from typing import Optional

from edge_infer_ros.ros import process
from edge_infer_ros.ros.container import Container, parse_component, read_composition
from rclpy.node import Node


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

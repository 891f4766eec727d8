"""
The pipeline's nodes, as the runner, the container and the launch files start them.

The shape itself (names, order, classes) is core/shape.py's; this adds what starting a node
takes. The launch files read it (plugins and executables by node name; the nodes a launch
starts come from ros/launch_args.py's plan); test/pipeline/test_real_tools.py runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from edge_infer_ros.core.shape import PIPELINE_SHAPE

COMPONENT_GROUP = 'edge_infer_ros.components'


@dataclass(frozen=True)
class NodeSpec:
    """One node of a pipeline: which class, under which name, with which remaps."""

    plugin: str
    executable: str
    name: str
    remaps: tuple[tuple[str, str], ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    param_files: tuple[str, ...] = ('pipeline.yaml',)


#: The camera-to-action pipeline and its budget monitor, in data-flow order (core/shape.py).
PIPELINE: tuple[NodeSpec, ...] = tuple(
    NodeSpec(node.plugin, node.executable, node.name, param_files=node.param_files)
    for node in PIPELINE_SHAPE)


def load_plugin(plugin: str) -> type:
    """Return the node class registered under a plugin name (like rclcpp_components)."""
    found = entry_points(group=COMPONENT_GROUP)
    for entry in found:
        if entry.name == plugin:
            return entry.load()
    known = ', '.join(sorted(e.name for e in found)) or 'none (is the package installed?)'
    raise LookupError(f'no component {plugin!r}; known: {known}')

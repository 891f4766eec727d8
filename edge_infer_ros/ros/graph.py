"""
The pipeline's nodes, as the runner, the container and the launch files start them.

The launch files read it (plugins and executables by node name; the nodes a launch starts
come from ros/launch_args.py's plan); test/pipeline/test_real_tools.py runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

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


#: The camera-to-action pipeline and its budget monitor, in data-flow order.
PIPELINE: tuple[NodeSpec, ...] = (
    NodeSpec('edge_infer_ros::Camera', 'camera_node', 'camera'),
    NodeSpec('edge_infer_ros::Preprocess', 'preprocess_node', 'preprocess'),
    NodeSpec('edge_infer_ros::Detector', 'detector_node', 'detector'),
    NodeSpec('edge_infer_ros::Nms', 'nms_node', 'nms'),
    NodeSpec('edge_infer_ros::Action', 'action_node', 'action'),
    NodeSpec('edge_infer_ros::BudgetMonitor', 'budget_monitor', 'budget_monitor',
             param_files=('budget.yaml',)),
)


#: The stages a frame passes, camera to action, in order (the budget monitor only watches).
FRAME_STAGES: tuple[str, ...] = tuple(n.name for n in PIPELINE if n.name != 'budget_monitor')


def load_plugin(plugin: str) -> type:
    """Return the node class registered under a plugin name (like rclcpp_components)."""
    found = entry_points(group=COMPONENT_GROUP)
    for entry in found:
        if entry.name == plugin:
            return entry.load()
    known = ', '.join(sorted(e.name for e in found)) or 'none (is the package installed?)'
    raise LookupError(f'no component {plugin!r}; known: {known}')

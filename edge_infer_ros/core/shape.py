"""
The pipeline's shape, written once: its nodes in data-flow order, with what each is called.

Read by ``ros/graph.py`` (plugins, executables: the runner, the container and the launch
files), ``monitor/config.py`` (the default stage budgets), ``setup.py`` (entry points) and
``bench/``. Adding a stage is its plain module in ``stages/``, its node in ``ros/nodes/`` and
one entry here. Standard library only: ``setup.py`` runs this file before anything of the
package can be imported.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

#: The package whose node modules the shape names (``<PACKAGE>.ros.nodes.<module>``).
PACKAGE = 'edge_infer_ros'


class NodeShape(NamedTuple):
    """One node of the pipeline: its name, its code, and its part in a frame's way."""

    #: Node name, and the stage name in frame traces and budgets.
    name: str
    #: Module under ``edge_infer_ros.ros.nodes`` and the node class in it.
    module: str
    node_class: str
    #: Component name (``edge_infer_ros::<plugin>``, as rclcpp_components spells them).
    plugin: str
    #: Console script (``ros2 run edge_infer_ros <executable>``).
    executable: str
    #: Whether frames pass through it (the budget monitor only watches them).
    frame_stage: bool = True
    #: Default budget of the stage, ms (None: none; the camera's time is the ingest hop's).
    budget_ms: Optional[float] = None
    #: Parameter files under ``config/`` its launch gives it.
    param_files: tuple[str, ...] = ('pipeline.yaml',)

    @property
    def class_path(self) -> str:
        """Return the node class as an entry point spells it (``module:Class``)."""
        return f'{PACKAGE}.ros.nodes.{self.module}:{self.node_class}'

    @property
    def main_path(self) -> str:
        """Return the node's ``main()`` as an entry point spells it."""
        return f'{PACKAGE}.ros.nodes.{self.module}:main'


#: The camera-to-action pipeline and its budget monitor, in data-flow order.
PIPELINE_SHAPE: tuple[NodeShape, ...] = (
    NodeShape('camera', 'camera', 'CameraNode', f'{PACKAGE}::Camera', 'camera_node'),
    NodeShape('preprocess', 'preprocess', 'PreprocessNode', f'{PACKAGE}::Preprocess',
              'preprocess_node', budget_ms=4.0),
    NodeShape('detector', 'detector', 'DetectorNode', f'{PACKAGE}::Detector', 'detector_node',
              budget_ms=14.0),
    NodeShape('nms', 'nms', 'NmsNode', f'{PACKAGE}::Nms', 'nms_node', budget_ms=5.0),
    NodeShape('action', 'action', 'ActionNode', f'{PACKAGE}::Action', 'action_node',
              budget_ms=6.0),
    NodeShape('budget_monitor', 'budget_monitor', 'BudgetMonitorNode',
              f'{PACKAGE}::BudgetMonitor', 'budget_monitor', frame_stage=False,
              param_files=('budget.yaml',)),
)


def frame_stages(shape: tuple[NodeShape, ...] = PIPELINE_SHAPE) -> tuple[str, ...]:
    """Return the stages a frame passes, in order."""
    return tuple(n.name for n in shape if n.frame_stage)


def default_stage_budgets_ms(shape: tuple[NodeShape, ...] = PIPELINE_SHAPE) -> dict[str, float]:
    """Return the default budget of each stage that has one, in pipeline order."""
    return {n.name: n.budget_ms for n in shape if n.budget_ms is not None}


def entry_points(shape: tuple[NodeShape, ...] = PIPELINE_SHAPE) -> dict[str, list[str]]:
    """Return the setup.py entry points of the nodes: components and console scripts."""
    return {f'{PACKAGE}.components': [f'{n.plugin} = {n.class_path}' for n in shape],
            'console_scripts': [f'{n.executable} = {n.main_path}' for n in shape]}


#: The stages a frame passes, camera to action, in order.
FRAME_STAGES: tuple[str, ...] = frame_stages()

#: The stages after the camera, each with its own budget (the camera's time is the ingest hop).
BUDGETED_STAGES: tuple[str, ...] = tuple(default_stage_budgets_ms())

"""The pipeline's shape: one declaration the budgets, the entry points and the stages follow."""

from edge_infer_ros.core.shape import (BUDGETED_STAGES, default_stage_budgets_ms, entry_points,
                                       FRAME_STAGES, frame_stages, NodeShape, PIPELINE_SHAPE)
from edge_infer_ros.monitor.config import BudgetConfig

#: A stage added to the pipeline, for the test: one entry in a shape.
TRACKER = NodeShape('tracker', 'tracker', 'TrackerNode', 'edge_infer_ros::Tracker',
                    'tracker_node', budget_ms=2.0)


def test_the_shape_gives_the_stages_in_data_flow_order() -> None:
    assert FRAME_STAGES == ('camera', 'preprocess', 'detector', 'nms', 'action')
    assert BUDGETED_STAGES == FRAME_STAGES[1:]  # the camera's time is the ingest hop's
    assert [n.name for n in PIPELINE_SHAPE][-1] == 'budget_monitor'
    assert len({n.name for n in PIPELINE_SHAPE}) == len(PIPELINE_SHAPE)
    assert len({n.plugin for n in PIPELINE_SHAPE}) == len({n.executable for n in PIPELINE_SHAPE})


def test_the_monitor_budgets_the_stages_of_the_shape() -> None:
    assert BudgetConfig().stage_budgets_ms == default_stage_budgets_ms()
    assert list(BudgetConfig().stage_budgets_ms) == list(BUDGETED_STAGES)


def test_a_new_stage_is_one_entry_in_the_shape() -> None:
    shape = PIPELINE_SHAPE[:3] + (TRACKER,) + PIPELINE_SHAPE[3:]
    assert frame_stages(shape) == ('camera', 'preprocess', 'detector', 'tracker', 'nms',
                                   'action')
    assert default_stage_budgets_ms(shape)['tracker'] == 2.0
    points = entry_points(shape)
    assert 'edge_infer_ros::Tracker = edge_infer_ros.ros.nodes.tracker:TrackerNode' in \
        points['edge_infer_ros.components']
    assert 'tracker_node = edge_infer_ros.ros.nodes.tracker:main' in points['console_scripts']
    assert len(points['console_scripts']) == len(PIPELINE_SHAPE) + 1

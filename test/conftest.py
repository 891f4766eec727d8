"""
Shared fixtures: rclpy contexts, a model with known detections, and composed pipelines.

Each test gets its own rclpy context; two contexts in one test process behave like two
processes (separate DDS participants, separate local buses), which is how tests check what an
outside subscriber sees without paying for a subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from edge_infer_ros.ros.container import Container
from edge_infer_ros.runs.options import component_specs, RunOptions
import pytest
import rclpy
from rclpy.context import Context
from support import onnx_models

#: Class names of the shipped model, used by the planted model too.
CLASS_NAMES = ('ball', 'box', 'cone', 'person')


@dataclass(frozen=True)
class PlantedModel:
    """A 320x320 YOLOv8-layout model whose output is fixed: its detections are known."""

    path: str
    #: Expected detections on a 640x480 frame: (x_min, y_min, x_max, y_max), score, class id.
    expected: tuple[tuple[tuple[float, float, float, float], float, int], ...]


@pytest.fixture(scope='session')
def planted_model(tmp_path_factory: pytest.TempPathFactory) -> PlantedModel:
    """Two planted detections: a ball in the middle and a person on the left."""
    directory = tmp_path_factory.mktemp('planted')
    boxes, scores = onnx_models.background(64, 4, (320, 320))
    boxes[0] = (160, 160, 80, 80)      # cx, cy, w, h in model pixels
    scores[0] = (0.9, 0.0, 0.0, 0.0)   # ball
    boxes[1] = (60, 160, 40, 120)
    scores[1] = (0.0, 0.0, 0.0, 0.8)   # person
    path, _ = onnx_models.make_yolov8_model(directory / 'planted.onnx', num_classes=4,
                                            num_anchors=64, input_hw=(320, 320), boxes=boxes,
                                            scores=scores)
    onnx_models.write_ultralytics_metadata(path, CLASS_NAMES, (320, 320))
    # 640x480 letterboxed into 320x320: scale 0.5, pad_y 40. original = (model - pad) / scale.
    expected = (((240.0, 160.0, 400.0, 320.0), 0.9, 0),
                ((80.0, 120.0, 160.0, 360.0), 0.8, 3))
    return PlantedModel(str(path), expected)


@pytest.fixture
def ros_context() -> Iterator[Context]:
    """Give the test a fresh rclpy context (like a process of its own)."""
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture
def second_context() -> Iterator[Context]:
    """Another context: an 'outside process' for the pipeline under test."""
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def fast_diagnostics(period: float = 0.2) -> dict[str, dict[str, Any]]:
    """Per-node overrides for a quick diagnostics period."""
    return {name: {'diagnostics_period_s': period}
            for name in ('camera', 'preprocess', 'detector', 'nms', 'action', 'budget_monitor')}


@pytest.fixture
def composed(ros_context: Context, planted_model: PlantedModel
             ) -> Iterator[Callable[..., tuple[Container, dict[str, Any]]]]:
    """Build a composed pipeline in the test's context; shut down after the test."""
    containers: list[Container] = []

    def build(frames: int = 30, fps: float = 30.0, model_path: Optional[str] = None,
              overrides: Optional[dict[str, dict[str, Any]]] = None, start: bool = True,
              names: Optional[set] = None) -> tuple[Container, dict[str, Any]]:
        extra = fast_diagnostics()
        for name, values in (overrides or {}).items():
            extra.setdefault(name, {}).update(values)
        options = RunOptions(frames=frames, fps=fps,
                             model_path=model_path or planted_model.path, extra=extra)
        container = Container(ros_context)
        containers.append(container)
        nodes = {spec.name: container.load(spec) for spec in component_specs(options, names)}
        container.spin_in_background()
        if start:
            problems = container.start()
            assert not problems, problems
        return container, nodes

    yield build
    for container in containers:
        container.shutdown()

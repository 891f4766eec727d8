"""What a run of the main job is: its options and the components they start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from edge_infer_ros.core.resources import config_path
from edge_infer_ros.core.shape import FRAME_STAGES
from edge_infer_ros.ros.container import ComponentSpec
from edge_infer_ros.ros.graph import NodeSpec, PIPELINE
from edge_infer_ros.ros.same_host import AUTO
import yaml


@dataclass
class RunOptions:
    """What to run and for how long."""

    mode: str = 'composed'
    transport: str = 'raw'
    frames: int = 300
    width: int = 640
    height: int = 480
    #: Camera rate; None: the config file's (a recording replays at its own pace anyway).
    fps: Optional[float] = 30.0
    seed: int = 0
    backend: str = 'onnxruntime'
    model_path: str = ''
    config: str = ''
    budget: str = ''
    namespace: str = ''
    report_json: str = ''
    profile: str = ''
    timeout_s: float = 0.0
    same_host: str = AUTO
    #: A bag to replay instead of the synthetic camera, and its image topic ('': the only one).
    bag: str = ''
    bag_topic: str = ''
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rate(self) -> float:
        """Return the camera rate in force: the option, else the config file's, else 30."""
        if self.fps is not None:
            return self.fps
        try:
            with open(self.config or config_path('pipeline.yaml'), encoding='utf-8') as stream:
                sections = yaml.safe_load(stream) or {}
            return float(sections['/**/camera']['ros__parameters']['fps'])
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
            return 30.0

    def run_limit_s(self) -> float:
        """Return how long a run may take: frames at the rate, a whole bag at most an hour."""
        if self.timeout_s:
            return self.timeout_s
        if not self.frames:
            return 3600.0
        return max(30.0, 3.0 * self.frames / self.rate() + 20.0)

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Parameters the command line sets, per node name."""
        result: dict[str, dict[str, Any]] = {
            'camera': {'max_frames': self.frames, 'width': self.width, 'height': self.height,
                       'seed': self.seed},
            'detector': {'backend': self.backend},
            # The camera starts once every stage is active and warm: the report judges every
            # frame (the start-up grace is for drivers that start before the pipeline).
            'action': {'deadline_grace_s': 0.0},
            'budget_monitor': {'deadline_grace_s': 0.0},
        }
        if self.fps is not None:
            result['camera']['fps'] = self.fps
            result['detector']['expected_fps'] = self.fps
        if self.bag:
            result['camera'].update({'source': 'bag', 'uri': self.bag,
                                     'bag_topic': self.bag_topic})
        if self.model_path:
            for name in ('preprocess', 'detector'):
                result.setdefault(name, {})['model_path'] = self.model_path
        if self.mode == 'split':
            # Our own camera publishes reliable: take every frame, as a robot's own split
            # pipeline should (best-effort loses fragmented large frames over UDP).
            result.setdefault('preprocess', {})['qos.input.reliability'] = 'reliable'
        if self.mode == 'split' and self.transport == 'compressed':
            result['camera']['publish_compressed'] = True
            result.setdefault('preprocess', {})['input_transport'] = 'compressed'
        if self.mode == 'split':
            for name in FRAME_STAGES:
                result.setdefault(name, {})['transport.same_host'] = self.same_host
        for name, values in self.extra.items():
            result.setdefault(name, {}).update(values)
        return result


def component_specs(options: RunOptions, names: Optional[set] = None) -> list[ComponentSpec]:
    """Return the pipeline's components with the parameter files and overrides of a run."""
    files = {'pipeline.yaml': options.config or config_path('pipeline.yaml'),
             'budget.yaml': options.budget or config_path('budget.yaml')}
    overrides = options.overrides()
    specs = []
    for node in PIPELINE:
        if names is not None and node.name not in names:
            continue
        specs.append(_spec(node, options.namespace, files, overrides.get(node.name, {})))
    return specs


def _spec(node: NodeSpec, namespace: str, files: dict[str, str],
          overrides: dict[str, Any]) -> ComponentSpec:
    return ComponentSpec(node.plugin, node.name, namespace, node.remaps,
                         tuple(files[f] for f in node.param_files),
                         {**node.parameters, **overrides})

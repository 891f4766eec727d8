"""
Detector stage: model inference (TensorRT or ONNX Runtime) and decoding of the YOLO output.

The backend is loaded on *configure* (not when the node starts), so a robot can bring the
node up and load the model when it is ready. When the preferred backend (TensorRT) cannot
start, or fails while running, the node falls back to ONNX Runtime on the CPU, keeps going,
and says so in its diagnostics (WARN with the reason) and in the frame's candidates.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from edge_infer_ros.core.awake import CpuKeeper
from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.params import ParamSpec
from edge_infer_ros.core.resources import config_path, resolve_model_path
from edge_infer_ros.core.sequence import RecentLoss
from edge_infer_ros.inference.backends.factory import BACKENDS, FallbackBackend
from edge_infer_ros.inference.model_info import load_model_info, ModelInfo
from edge_infer_ros.inference.precision import graph_precision
from edge_infer_ros.monitor.config import load_budget_file
from edge_infer_ros.ros import convert, diagnostic_keys as keys, topics
from edge_infer_ros.ros.nodes.base import StageNode
from edge_infer_ros.ros.nodes.preprocess import MODEL_PARAMS
from edge_infer_ros.ros.process import run_single
from edge_infer_ros.stages.detector import Detector, drop_warning, Onboarding, warm_up
from edge_infer_ros_msgs.msg import CandidateArray, TensorFrame


#: Window over which the share of dropped frames is judged (s).
DROP_WINDOW_S = 10.0


class DetectorNode(StageNode):
    """Runs the model on ``tensor`` frames and publishes decoded ``candidates``."""

    STAGE = 'detector'
    DEFAULT_NAME = 'detector'
    DEFAULT_INPUT_MODE = 'auto'
    PARAMS = MODEL_PARAMS + (
        ParamSpec('backend', 'onnxruntime', 'inference backend', choices=BACKENDS,
                  runtime=False),
        ParamSpec('fallback_backend', 'onnxruntime', 'backend used when the preferred one '
                  'cannot start or fails (none: fail instead)',
                  choices=('onnxruntime', 'none'), runtime=False),
        ParamSpec('layout', 'auto', 'YOLO output layout (auto: from metadata or shape)',
                  choices=('auto', 'yolov8', 'yolov5'), runtime=False),
        ParamSpec('class_names', [], "the model's class names in class-id order (empty: from "
                  "the metadata file or the model's own metadata); their count must match the "
                  'model output', list_of=str, runtime=False),
        ParamSpec('score_threshold', 0.25, 'minimum class score of a candidate', low=0.0,
                  high=1.0),
        ParamSpec('max_candidates', 300, 'most candidates passed to NMS (best scores)', low=1,
                  high=100000),
        ParamSpec('intra_op_threads', 2, 'ONNX Runtime threads per inference (0: all cores)',
                  low=0, high=256, runtime=False),
        ParamSpec('allow_spinning', False, 'let ONNX Runtime worker threads spin-wait between '
                  'runs (faster inference, a core taken from the other stages)',
                  runtime=False),
        ParamSpec('pin_threads', True, 'put each ONNX Runtime pool thread on a CPU of its own '
                  "(the last ones of the process's CPUs) and keep the calling thread off "
                  'those CPUs while an inference runs, so that they run side by side instead '
                  'of taking turns on one core; false: the scheduler places them',
                  runtime=False),
        ParamSpec('spin_within_run', True, 'let ONNX Runtime pool threads spin-wait between '
                  'the operators of one inference and stop when it returns (a pool thread '
                  'that sleeps is woken once per operator, slowly after an idle period; no '
                  'CPU is spent between frames); allow_spinning true spins between runs too',
                  runtime=False),
        ParamSpec('spin_duration_us', 100, 'with spin_within_run: how long an ONNX Runtime '
                  'pool thread spins without work before it sleeps, microseconds',
                  low=1, high=100000, runtime=False),
        ParamSpec('keep_pool_awake', False, 'with pin_threads: a helper process at idle '
                  "priority keeps the pool threads' CPUs out of idle from a frame's arrival in "
                  'this process until its inference ends (a CPU that idled since the last '
                  'frame starts the pool thread late); any other thread preempts it. Off by '
                  'default: where measured it lowered the median and raised the p99',
                  runtime=False),
        ParamSpec('keep_awake_max_ms', 5.0, 'with keep_pool_awake: the longest one frame keeps '
                  "the pool threads' CPUs awake, milliseconds (a frame refused on its way "
                  'never reaches the inference that would end it)', low=0.1, high=100.0,
                  runtime=False),
        ParamSpec('precision', 'fp16', 'TensorRT precision', choices=('fp32', 'fp16', 'int8'),
                  runtime=False),
        ParamSpec('workspace_mb', 1024, 'TensorRT builder workspace, MiB', low=16,
                  high=65536, runtime=False),
        ParamSpec('engine_cache_dir', '', 'where TensorRT engines are cached (empty: '
                  '~/.cache/edge_infer_ros/engines)', runtime=False),
        ParamSpec('device', 0, 'CUDA device index for TensorRT', low=0, high=64,
                  runtime=False),
        ParamSpec('warmup_runs', 5, 'inferences on a blank tensor at configure, so the first '
                  'frames do not pay first-run costs; also timed, to judge the model before '
                  'any frame flows', low=0, high=100, runtime=False),
        ParamSpec('expected_fps', 0.0, 'camera rate the detector must keep up with (0: not '
                  'checked); a slower model is a WARN at configure', low=0.0, high=1000.0),
        ParamSpec('budget_file', '', "the budget monitor's file whose detector budget the "
                  "warm-up time is judged by ('': the shipped config/budget.yaml)",
                  runtime=False),
        ParamSpec('max_drop_share', 0.5, 'dropping more than this share of the frames '
                  '(keep-latest) over 10 s is a WARN', low=0.0, high=1.0),
    )

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.model: Optional[ModelInfo] = None
        self.backend: Optional[FallbackBackend] = None
        self.detector: Optional[Detector] = None
        # Kept across reconfigurations: diagnostics count over the node's life.
        self._counted = (0, 0)
        self.onboarding: Optional[Onboarding] = None
        self.warmup_ms: list[float] = []
        self._drops = RecentLoss(DROP_WINDOW_S)
        self._output_warning = ''  # why the model's recent outputs are sick ('' when not)

    def create_io(self) -> None:
        """Input tensor, output candidates."""
        self.add_input(topics.TENSOR, TensorFrame, convert.tensor_from_msg, self._on_tensor)
        self.candidates_out = self.add_output(topics.CANDIDATES, CandidateArray,
                                              convert.candidates_to_msg)

    def _backend_options(self) -> dict[str, Any]:
        return {'intra_op_threads': self.p['intra_op_threads'],
                'allow_spinning': self.p['allow_spinning'], 'pin_threads': self.p['pin_threads'],
                'spin_within_run': self.p['spin_within_run'],
                'spin_duration_us': self.p['spin_duration_us'],
                'keep_awake': self.p['keep_pool_awake'],
                'keep_awake_max_us': int(round(self.p['keep_awake_max_ms'] * 1000)),
                'precision': self.p['precision'], 'workspace_mb': self.p['workspace_mb'],
                'engine_cache_dir': self.p['engine_cache_dir'], 'device': self.p['device']}

    def configure_stage(self) -> None:
        """Check and load the model, then start the backend (with fallback)."""
        # Nothing of a previous configuration may show in diagnostics if this one fails.
        self.model, self.backend, self.fault = None, None, ''
        model = load_model_info(resolve_model_path(self.p['model_path']),
                                expected_sha256=self.p['model_sha256'],
                                layout=self.p['layout'], class_names=self.p['class_names'])
        for note in model.notes:
            self.get_logger().info(f'model {model.path}: {note}')
        backend = FallbackBackend(self.p['backend'], model, self._backend_options(),
                                  self.p['fallback_backend'], self._on_fallback)
        backend.load()
        self.model, self.backend = model, backend  # only now: a failed configure shows none
        if not model.pinned:
            self.get_logger().warning(self._unpinned_message())
        self.detector = Detector(backend, model, self.p['max_candidates'])
        self.get_logger().info(f'model {model.path} ({model.layout}, '
                               f'{model.num_classes} classes, {graph_precision(model.path)}) '
                               f'on {self.backend.description}')
        self._onboard()

    def _onboard(self) -> None:
        """Warm the model up and judge its time against the budget and the camera rate."""
        self.warmup_ms = warm_up(self.detector, self.p['warmup_runs'])
        budget_file = self.p['budget_file'] or config_path('budget.yaml')
        budget = load_budget_file(budget_file).stage_budgets_ms.get(self.STAGE)
        self.onboarding = Onboarding.from_runs(self.warmup_ms, budget, self.p['expected_fps'])
        if self.onboarding is None:
            return
        self.get_logger().info(f'warm-up: {len(self.warmup_ms)} runs, '
                               f'{self.onboarding.inference_ms:.2f} ms median after the first '
                               f'({self.warmup_ms[0]:.1f} ms)')
        if self.onboarding.warning():
            self.get_logger().warning(self.onboarding.warning())

    @property
    def fallback_reason(self) -> Optional[str]:
        """Why the detector runs on the fallback backend (None: on the preferred one)."""
        return self.backend.fallback_reason if self.backend is not None else None

    def _on_fallback(self, reason: str) -> None:
        """Report a switch to the fallback backend (at load or mid-run)."""
        self.fault = f'{self.p["backend"]} backend unavailable, running on fallback: {reason}'
        self.get_logger().warning(self.fault)

    def cleanup_stage(self) -> None:
        """Release the backend (GPU memory too)."""
        if self.backend is not None:
            self.backend.release()
        self.backend = None
        self._counted = (self.inferences, self.non_finite_outputs)
        self._output_warning = ''
        self.detector = None
        self.model = None

    def parameters_changed(self, changed: dict[str, Any]) -> None:
        """max_candidates takes effect on the next frame."""
        if 'max_candidates' in changed and self.detector is not None:
            self.detector.set_max_candidates(self.p['max_candidates'])

    @property
    def inferences(self) -> int:
        """Model runs over the node's life (all configurations)."""
        return self._counted[0] + (self.detector.inferences if self.detector else 0)

    @property
    def non_finite_outputs(self) -> int:
        """Anchors with NaN/inf outputs over the node's life (dropped)."""
        return self._counted[1] + (self.detector.non_finite_outputs if self.detector else 0)

    def _on_tensor(self, envelope: Envelope, received_ns: int) -> None:
        start = self.clock.mono_ns()
        out = self.detector(envelope.payload, self.p['score_threshold'])
        if self.detector.last_non_finite:
            level, text = self.detector.output_verdict()
            if level == 'error':  # with its time: health judges recent errors only
                self.record_error(f'{text} (frame {envelope.camera}#{envelope.seq})')
            self._output_warning = text
        elif self._output_warning:
            self._output_warning = self.detector.output_verdict()[1]
        self.emit(self.candidates_out, envelope, out, received_ns, start)

    def _unpinned_message(self) -> str:
        return (f'model {self.model.path} is not pinned (no sha256 in its metadata, '
                f'model_sha256 empty): set model_sha256 to {self.model.sha256}')

    def stage_warning(self) -> str:
        """WARN: a model too slow (warm-up), frames dropped, or a model not pinned."""
        received = sum(i.stats.received for i in self.inputs)
        dropped = sum(i.stats.dropped for i in self.inputs)
        window_dropped, window_total = self._drops.update(time.monotonic(), received - dropped,
                                                          dropped)
        slow = self.onboarding.warning() if self.onboarding is not None else ''
        unpinned = self.model is not None and not self.model.pinned
        keeper = self._keeper()
        return (self._output_warning or slow or
                drop_warning(window_dropped, window_total, self.p['max_drop_share'],
                             DROP_WINDOW_S) or
                (self._unpinned_message() if unpinned else '') or
                (f'pool CPUs no longer kept awake: {keeper.error}'
                 if keeper is not None and keeper.error else ''))

    def _keeper(self) -> Optional[CpuKeeper]:
        """Return the running backend's CPU keeper (None: none, see keep_awake_note)."""
        active = self.backend.active if self.backend is not None else None
        return getattr(active, 'keeper', None)

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """Backend in use and why it may not be the preferred one."""
        values = [(keys.BACKEND, self.backend.name if self.backend else 'none'),
                  ('backend_preferred', self.p['backend']),
                  ('inferences', str(self.inferences)),
                  ('non_finite_outputs', str(self.non_finite_outputs))]
        if self.backend is not None:
            values.append((keys.BACKEND_DESCRIPTION, self.backend.description))
        if self.fallback_reason:
            values.append((keys.FALLBACK_REASON, self.fallback_reason))
        values += self._keep_awake_values()
        if self.onboarding is not None:
            values += [('warmup_inference_ms', f'{self.onboarding.inference_ms:.3f}'),
                       ('sustainable_fps', f'{self.onboarding.sustainable_fps:.1f}')]
        if self.model is not None:
            values += [('model', self.model.path), ('model_sha256', self.model.sha256),
                       ('model_pinned', str(self.model.pinned).lower()),
                       ('classes', ','.join(self.model.class_names)[:512])]
        return values

    def _keep_awake_values(self) -> list[tuple[str, str]]:
        """Tell whether the pool's CPUs are kept awake for frames, and at what cost per frame."""
        keeper = self._keeper()
        if keeper is None:
            active = self.backend.active if self.backend is not None else None
            note = getattr(active, 'keep_awake_note', '')
            return [('keep_awake', note or 'off')] if active is not None else []
        if keeper.error:
            return [('keep_awake', f'off: {keeper.error}')]
        frames = self.detector.inferences if self.detector is not None else 0
        cpu_ms = keeper.cpu_ns() / 1e6 / frames if frames else 0.0
        return [('keep_awake', 'CPUs ' + ','.join(map(str, keeper.cpus))),
                ('keep_awake_cpu_ms_per_frame', f'{cpu_ms:.3f}'),
                ('keep_awake_lead_ms', f'{keeper.mean_lead_ms:.3f}')]


def main(args: Optional[list[str]] = None) -> None:
    """Run the detector node on its own."""
    run_single(DetectorNode, args)


if __name__ == '__main__':
    main()

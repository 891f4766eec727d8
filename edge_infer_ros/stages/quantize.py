"""
Static INT8 (QDQ) quantization of a YOLO ONNX detector, calibrated on the user's own frames.

Why here: careless INT8 calibration (random data, another preprocessing, the detection head in
int8) is what makes quantized detectors "unusable"; so the frames go through the pipeline's
own :class:`Preprocessor` letterbox, and the calibration method and the nodes left in float
are chosen by measuring each candidate against the FP32 model on held-back frames through the
pipeline's own decode and NMS (:func:`evaluate_model` does the same on the synthetic
validation set). The result is one QDQ file: ONNX Runtime runs it in int8 on the CPU and
TensorRT builds an INT8 engine from its Q/DQ nodes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import hashlib
import json
import os
from pathlib import Path
import tempfile
import time
from typing import Any, Optional, Sequence

from edge_infer_ros.core.payloads import TensorPayload
from edge_infer_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_infer_ros.inference.evaluation import box_iou, evaluate_detections
from edge_infer_ros.inference.model_info import file_sha256, load_model_info, ModelError, \
    ModelInfo
from edge_infer_ros.inference.precision import graph_precision, QUANTIZED_OPS
from edge_infer_ros.stages.calibration_frames import iter_frames, PathLike, QuantizeError, \
    read_labels
from edge_infer_ros.stages.detector import Detector
from edge_infer_ros.stages.nms import detections_from_candidates, NmsSettings
from edge_infer_ros.stages.preprocess import Preprocessor
import numpy as np
import onnx

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]

METHODS = ('minmax', 'entropy', 'percentile')
#: Op types whose float weights make a model worth quantizing.
_WEIGHTED_OPS = ('Conv', 'MatMul', 'Gemm', 'ConvTranspose')
SCORE_THRESHOLD = 0.25
NMS_IOU = 0.5


@dataclass(frozen=True)
class Candidate:
    """One quantization setting tried: calibration method and the nodes kept in float."""

    method: str
    float_head: bool

    @property
    def name(self) -> str:
        """Return a short label, e.g. ``minmax+float-head``."""
        return self.method + ('+float-head' if self.float_head else '')


@dataclass
class CandidateResult:
    """What one candidate measured on the held-back frames."""

    candidate: Candidate
    accuracy: float
    metric: str
    inference_ms_p50: float
    excluded_nodes: list[str] = field(default_factory=list)
    error: str = ''

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form written into the metadata."""
        out: dict[str, Any] = {'method': self.candidate.method,
                               'float_head': self.candidate.float_head,
                               'metric': self.metric, 'accuracy': round(self.accuracy, 4),
                               'inference_ms_p50': round(self.inference_ms_p50, 3),
                               'nodes_in_float': len(self.excluded_nodes)}
        if self.error:
            out['error'] = self.error
        return out


def default_candidates() -> list[Candidate]:
    """Every method with and without the detection head in float."""
    return [Candidate(m, h) for m in METHODS for h in (False, True)]


# ---------------------------------------------------------------------------- model checks
def check_quantizable(model_path: PathLike) -> ModelInfo:
    """Return the model's info, or raise QuantizeError saying why it cannot be quantized."""
    path = Path(os.fspath(model_path))
    if path.suffix.lower() != '.onnx':
        raise QuantizeError(f'model {path} is not an ONNX file (.onnx): only ONNX models are '
                            'quantized (export yours to ONNX first)')
    try:
        info = load_model_info(path)
    except ModelError as e:
        raise QuantizeError(f'cannot quantize: {e}') from e
    proto = onnx.load(str(path), load_external_data=False)
    if any(n.op_type in QUANTIZED_OPS for n in proto.graph.node):
        raise QuantizeError(f'model {path} is already quantized (it has QuantizeLinear / '
                            'QLinear nodes): quantize its float original instead')
    if np.dtype(info.input_dtype) != np.float32:
        raise QuantizeError(f'model {path} input is {np.dtype(info.input_dtype).name}: only '
                            'float32 models are quantized (use the FP32 export, not FP16)')
    float_inits = {t.name for t in proto.graph.initializer
                   if t.data_type == onnx.TensorProto.FLOAT}
    weighted = [n for n in proto.graph.node if n.op_type in _WEIGHTED_OPS
                and any(i in float_inits for i in n.input[1:2])]
    if not weighted:
        raise QuantizeError(f'model {path} has no Conv / MatMul / Gemm with float weights: '
                            'nothing to quantize')
    dims = [d for d in proto.graph.input if d.name == info.input_name][0]
    shape = dims.type.tensor_type.shape.dim
    if any(not d.HasField('dim_value') for d in shape[2:]) and not info.metadata_path:
        raise QuantizeError(f'model {path} has a dynamic input size and no metadata file '
                            'giving input_shape: the calibration size is unknown')
    return info


def head_nodes(model_path: PathLike) -> list[str]:
    """
    Return the detection head's tail: the last convolutions and everything after them.

    Walking back from the outputs, every node reached before a Conv (the box decode, the
    sigmoid, the concat) plus the Convs that end the walk. These are the few nodes whose
    int8 error lands directly in box coordinates and scores.
    """
    proto = onnx.load(os.fspath(model_path), load_external_data=False)
    producer = {o: n for n in proto.graph.node for o in n.output}
    names: list[str] = []
    seen: set[int] = set()
    stack = [producer[o.name] for o in proto.graph.output if o.name in producer]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if not node.name:
            continue
        names.append(node.name)
        if node.op_type in _WEIGHTED_OPS:
            continue
        stack.extend(producer[i] for i in node.input if i in producer)
    return names


def _named_copy(model_path: Path, out_dir: Path) -> Path:
    """Give every node a name (the quantizer's exclusion list works by name)."""
    proto = onnx.load(str(model_path))
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f'{node.op_type}_{i}'
    target = out_dir / 'named.onnx'
    onnx.save(proto, str(target))
    return target


# ---------------------------------------------------------------------------- running
class _Runner:
    """The pipeline's detector stage and NMS on one model file (2 threads, like the node)."""

    def __init__(self, info: ModelInfo, path: Path, threads: int = 2) -> None:
        # The candidate's own bytes: ``info`` holds the FP32 file's, which backends load.
        data = path.read_bytes()
        model = dataclasses.replace(info, path=str(path), data=data,
                                    sha256=hashlib.sha256(data).hexdigest())
        self.backend = OnnxRuntimeBackend(model, {'intra_op_threads': threads})
        self.backend.load()
        self.detector = Detector(self.backend, model, 1000)
        self.settings = NmsSettings(score_threshold=SCORE_THRESHOLD, iou_threshold=NMS_IOU)

    def detect(self, payload: TensorPayload) -> Detections:
        cand = self.detector(payload, SCORE_THRESHOLD)
        det, _ = detections_from_candidates(cand, self.settings)
        return (np.array(det.boxes), np.array(det.scores), np.array(det.class_ids))

    def time_ms(self, tensor: np.ndarray, runs: int) -> float:
        for _ in range(3):
            self.backend.infer(tensor)
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            self.backend.infer(tensor)
            ts.append((time.perf_counter() - t) * 1e3)
        return float(np.median(ts))

    def close(self) -> None:
        self.backend.release()


def preprocess(images: Sequence[np.ndarray], info: ModelInfo) -> list[TensorPayload]:
    """Letterbox BGR images with the pipeline's Preprocessor; copies, since the pool reuses."""
    pre = Preprocessor(info.input_shape[3], info.input_shape[2], info.color_order,
                       info.letterbox_pad_value)
    out = []
    for img in images:
        tensor, lb = pre(img, 'bgr8')
        out.append(TensorPayload(np.array(tensor), lb, img.shape[1], img.shape[0]))
    return out


def agreement(reference: Sequence[Detections], other: Sequence[Detections]) -> float:
    """
    F1 of ``other``'s detections against ``reference``'s: a match is same class and IoU >= 0.5.

    1.0 when both find exactly the same boxes; frames where neither finds anything count as
    agreeing.
    """
    matched = total_ref = total_other = 0
    for (rb, _, rc), (ob, _, oc) in zip(reference, other):
        total_ref += len(rb)
        total_other += len(ob)
        if not len(rb) or not len(ob):
            continue
        iou = box_iou(ob, rb)
        # The same box twice agrees even when it has no area (IoU would be 0/0).
        same = (np.asarray(ob, np.float64)[:, None, :] ==
                np.asarray(rb, np.float64)[None, :, :]).all(axis=2)
        iou[same] = 1.0
        iou[np.asarray(oc)[:, None] != np.asarray(rc)[None, :]] = 0.0
        taken = np.zeros(len(rb), bool)
        for i in np.argsort(-iou.max(axis=1)):
            cand = np.where(taken, -1.0, iou[i])
            j = int(np.argmax(cand))
            if cand[j] >= 0.5:
                taken[j] = True
                matched += 1
    if total_ref + total_other == 0:
        return 1.0
    return 2.0 * matched / (total_ref + total_other)


class _Reader:
    """CalibrationDataReader over preprocessed tensors (onnxruntime's interface)."""

    def __init__(self, name: str, tensors: Sequence[np.ndarray]) -> None:
        self.name = name
        self._it = iter(tensors)

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        t = next(self._it, None)
        return None if t is None else {self.name: t}


def _quantize(named: Path, out: Path, info: ModelInfo, tensors: Sequence[np.ndarray],
              candidate: Candidate, exclude: Sequence[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, \
        quantize_static
    method = {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
              'percentile': CalibrationMethod.Percentile}[candidate.method]
    extra: dict[str, Any] = {'CalibMovingAverage': False}
    if candidate.method == 'percentile':
        extra['CalibPercentile'] = 99.999
    quantize_static(str(named), str(out), _Reader(info.input_name, tensors),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method, nodes_to_exclude=list(exclude),
                    extra_options=extra)


@dataclass
class QuantizeReport:
    """What :func:`quantize_model` did: the file written, the choice and every candidate."""

    out_path: Path
    metadata_path: Path
    chosen: CandidateResult
    results: list[CandidateResult]
    fp32_accuracy: float
    fp32_inference_ms_p50: float
    metric: str


def quantize_model(model_path: PathLike, calibration: PathLike,
                   out_path: Optional[PathLike] = None, frames: int = 200,
                   holdout: float = 0.25, labels: Optional[PathLike] = None,
                   candidates: Optional[Sequence[Candidate]] = None,
                   timing_runs: int = 30, threads: int = 2,
                   calibration_description: str = '', bag_topic: str = '') -> QuantizeReport:
    """
    Quantize ``model_path`` to INT8 QDQ, calibrated on ``calibration``; write the file and JSON.

    The first ``1 - holdout`` of the frames calibrate, the rest are held back to score each
    candidate against the FP32 model (agreement F1 of detections, or mAP@0.5 when ``labels``
    cover the held-back frames). The most accurate candidate wins; among those within 0.002
    of it, the fastest.
    """
    src = Path(os.fspath(model_path))
    info = check_quantizable(src)
    out = Path(os.fspath(out_path)) if out_path else src.with_name(src.stem + '_int8.onnx')
    if out.resolve() == src.resolve():
        raise QuantizeError(f'--out {out} would overwrite the model being quantized')
    if frames < 2:
        raise QuantizeError(f'frames must be >= 2, got {frames}')
    named_frames = list(iter_frames(calibration, frames, bag_topic))
    if len(named_frames) < 2:
        raise QuantizeError(f'calibration source {calibration} gave {len(named_frames)} '
                            'readable frames: need at least 2 (some to calibrate, some to check)')
    n_hold = min(max(1, int(round(len(named_frames) * holdout))), len(named_frames) - 1)
    calib, held = named_frames[:-n_hold], named_frames[-n_hold:]
    calib_t = [p.tensor for p in preprocess([im for _, im in calib], info)]
    held_p = preprocess([im for _, im in held], info)
    gts = None
    if labels is not None:
        table = read_labels(labels)
        missing = [n for n, _ in held if n not in table]
        if missing:
            raise QuantizeError(f'labels file {labels} has no entry for held-back frames '
                                f'{missing[:5]}')
        gts = [table[n] for n, _ in held]
    metric = 'map50' if gts is not None else 'agreement_f1'

    fp32 = _Runner(info, src, threads)
    ref = [fp32.detect(p) for p in held_p]
    fp32_ms = fp32.time_ms(held_p[0].tensor, timing_runs)
    fp32.close()
    nc = info.num_classes

    def score(dets: Sequence[Detections]) -> float:
        if gts is not None:
            return evaluate_detections(dets, gts, nc).map50
        return agreement(ref, dets)

    fp32_acc = score(ref)
    results: list[CandidateResult] = []
    with tempfile.TemporaryDirectory(prefix='quantize_') as tmp:
        work = Path(tmp)
        named = _named_copy(src, work)
        head = head_nodes(named)
        for i, cand in enumerate(candidates or default_candidates()):
            exclude = head if cand.float_head else []
            qpath = work / f'cand{i}.onnx'
            try:
                _quantize(named, qpath, info, calib_t, cand, exclude)
                runner = _Runner(info, qpath, threads)
                dets = [runner.detect(p) for p in held_p]
                ms = runner.time_ms(held_p[0].tensor, timing_runs)
                runner.close()
                res = CandidateResult(cand, score(dets), metric, ms, list(exclude))
            except Exception as e:  # noqa: B902 - one failed candidate must not end the search
                res = CandidateResult(cand, -1.0, metric, float('nan'), list(exclude),
                                      f'{type(e).__name__}: {e}')
            results.append(res)
        ok = [r for r in results if not r.error]
        if not ok:
            reasons = '; '.join(f'{r.candidate.name}: {r.error}' for r in results)
            raise QuantizeError(f'no quantization of {src} succeeded: {reasons}')
        # The most accurate; among those within 0.002 of it, the fastest.
        top = max(r.accuracy for r in ok)
        chosen = min((r for r in ok if r.accuracy >= top - 0.002),
                     key=lambda r: r.inference_ms_p50)
        best_path = work / f'cand{results.index(chosen)}.onnx'
        proto = onnx.load(str(best_path))
        src_proto = onnx.load(str(src), load_external_data=False)
        del proto.metadata_props[:]
        proto.metadata_props.extend(src_proto.metadata_props)
        proto.metadata_props.add(key='quantization', value=f'int8 qdq {chosen.candidate.name}')
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(proto, str(out))

    meta_path = out.with_suffix('.json')
    meta = _source_metadata(info)
    meta.update({
        'file': out.name, 'format': 'onnx', 'precision': 'int8',
        'sha256': file_sha256(out), 'size_bytes': out.stat().st_size,
        'source_model': {'file': src.name, 'sha256': info.sha256,
                         'size_bytes': src.stat().st_size},
        'quantization': {
            'tool': 'edge_infer_ros quantize_model', 'format': 'QDQ', 'per_channel': True,
            'activations': 'uint8', 'weights': 'int8',
            'method': chosen.candidate.method, 'float_head': chosen.candidate.float_head,
            'nodes_in_float': chosen.excluded_nodes,
            'calibration': {'source': calibration_description or str(calibration),
                            'frames': len(calib), 'held_back_frames': len(held),
                            'preprocessing': 'edge_infer_ros Preprocessor letterbox '
                                             f'{info.input_shape[3]}x{info.input_shape[2]}'},
            'selection': {'metric': metric, 'score_threshold': SCORE_THRESHOLD,
                          'nms_iou': NMS_IOU, 'fp32_accuracy': round(fp32_acc, 4),
                          'fp32_inference_ms_p50': round(fp32_ms, 3),
                          'threads': threads,
                          'candidates': [r.as_dict() for r in results]},
            'onnxruntime': _ort_version(),
        },
        'accuracy': {metric: round(chosen.accuracy, 4)},
    })
    meta_path.write_text(json.dumps(meta, indent=2) + '\n', encoding='utf-8')
    return QuantizeReport(out, meta_path, chosen, results, fp32_acc, fp32_ms, metric)


def _ort_version() -> str:
    import onnxruntime as ort
    return str(ort.__version__)


def _source_metadata(info: ModelInfo) -> dict[str, Any]:
    """Keep the source's metadata keys (name, architecture, contract) for the INT8 file."""
    meta: dict[str, Any] = {}
    if info.metadata_path:
        try:
            meta = json.loads(Path(info.metadata_path).read_text(encoding='utf-8'))
        except (OSError, ValueError):
            meta = {}
    for key in ('eval', 'inference_ms', 'train', 'file', 'sha256', 'size_bytes'):
        meta.pop(key, None)
    if 'name' in meta:
        meta['name'] = str(meta['name']) + '_int8'
    meta.update({'input_name': info.input_name, 'input_shape': list(info.input_shape),
                 'output_name': info.output_name, 'output_shape': list(info.output_shape),
                 'layout': info.layout, 'class_names': list(info.class_names),
                 'color_order': info.color_order, 'normalize': info.normalize,
                 'letterbox_pad_value': info.letterbox_pad_value})
    return meta


# ---------------------------------------------------------------------------- evaluation
#: The held-out set the shipped model's figure comes from (models/README.md, detector.json).
EVAL_SEED = 1000
EVAL_FRAMES = 300
EVAL_SIZE = (640, 480)


def evaluate_model(model_path: PathLike, seed: int = EVAL_SEED, frames: int = EVAL_FRAMES,
                   width: int = EVAL_SIZE[0], height: int = EVAL_SIZE[1],
                   threads: int = 2) -> dict[str, Any]:
    """
    Score a model on the synthetic validation set through the pipeline's stages.

    Preprocessor letterbox, the detector stage's decode, the NMS stage (score 0.25, IoU 0.5)
    and :func:`evaluate_detections`: mAP@0.5 and mAP@0.5:0.95 (mean over IoU 0.50..0.95).
    """
    from edge_infer_ros.stages.synthetic import SyntheticScene
    try:
        info = load_model_info(model_path)
    except ModelError as e:
        raise QuantizeError(str(e)) from e
    scene = SyntheticScene(width=width, height=height, seed=seed)
    runner = _Runner(info, Path(os.fspath(model_path)), threads)
    pre = Preprocessor(info.input_shape[3], info.input_shape[2], info.color_order,
                       info.letterbox_pad_value)
    preds: list[Detections] = []
    gts = []
    try:
        for _, img, gt in scene.frames(0, frames):
            tensor, lb = pre(img, 'bgr8')
            preds.append(runner.detect(TensorPayload(tensor, lb, width, height)))
            gts.append(gt)
    finally:
        runner.close()
    nc = info.num_classes
    at50 = evaluate_detections(preds, gts, nc, 0.5)
    maps = [evaluate_detections(preds, gts, nc, float(t)).map50
            for t in np.linspace(0.5, 0.95, 10)]
    return {'model': os.fspath(model_path), 'precision': graph_precision(model_path),
            'seed': seed, 'frames': frames, 'width': width, 'height': height,
            'score_threshold': SCORE_THRESHOLD, 'nms_iou': NMS_IOU,
            'map50': round(at50.map50, 4), 'map50_95': round(float(np.mean(maps)), 4),
            'ap_per_class': {info.class_names[c]: round(v, 4)
                             for c, v in at50.ap_per_class.items()}}

"""
Checks of the detector that ships in models/: file, metadata, graph contract, accuracy.

Why: every stage downstream trusts ``models/detector.json`` (hash, shapes, layout,
class names) and the pipeline's accuracy test trusts the model itself; a model
retrained without updating the metadata, or exported in another layout, must
fail here with a clear message rather than deep in the pipeline.
"""

import ast
import hashlib
import json
from pathlib import Path
import sys

import cv2
from edge_infer_ros.inference.evaluation import evaluate_detections
from edge_infer_ros.stages.synthetic import CLASS_NAMES, SyntheticScene
import numpy as np
import onnx
import onnxruntime as ort
import pytest

MODELS = Path(__file__).resolve().parents[2] / 'models'
sys.path.insert(0, str(MODELS.parent))

from bench.common import opencv_batched_nms  # noqa: E402, I100


@pytest.fixture(scope='module')
def meta() -> dict:
    """Return the shipped metadata JSON."""
    with open(MODELS / 'detector.json', encoding='utf-8') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def session() -> ort.InferenceSession:
    """Open the shipped model the way the pipeline does (CPU, 2 threads)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(MODELS / 'detector.onnx'), so,
                                providers=['CPUExecutionProvider'])


def test_metadata_fields_and_hash(meta: dict) -> None:
    """The JSON names the file, its hash and the preprocessing contract."""
    path = MODELS / meta['file']
    assert meta['format'] == 'onnx' and meta['file'] == 'detector.onnx'
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta['sha256']
    assert path.stat().st_size < 5_000_000
    assert meta['layout'] == 'yolov8'
    assert meta['class_names'] == list(CLASS_NAMES)
    assert meta['color_order'] == 'rgb' and meta['normalize'] == 'div255'
    assert meta['letterbox_pad_value'] == 114
    assert meta['input_name'] == 'images' and meta['output_name'] == 'output0'
    assert meta['eval']['map50'] >= 0.85
    for key in ('p50', 'p99', 'threads'):
        assert key in meta['inference_ms']


def test_graph_matches_metadata(meta: dict, session: ort.InferenceSession) -> None:
    """Input and output names and static shapes are what the metadata says."""
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert inp.name == meta['input_name'] and list(inp.shape) == meta['input_shape']
    assert inp.type == 'tensor(float)'
    assert out.name == meta['output_name']
    assert out.shape[0] == 1 and out.shape[1] == 4 + len(CLASS_NAMES)
    x = np.zeros(meta['input_shape'], np.float32)
    y = session.run([out.name], {inp.name: x})[0]
    assert y.shape == (1, 4 + len(CLASS_NAMES), out.shape[2])
    scores = y[0, 4:]
    assert np.all((scores >= 0) & (scores <= 1)), 'class scores are sigmoid outputs'


def test_ultralytics_metadata_props(meta: dict) -> None:
    """The ONNX carries Ultralytics-style names / imgsz / task, consistent with the JSON."""
    model = onnx.load(str(MODELS / 'detector.onnx'))
    props = {p.key: p.value for p in model.metadata_props}
    names = ast.literal_eval(props['names'])
    assert names == dict(enumerate(CLASS_NAMES))
    assert ast.literal_eval(props['imgsz']) == meta['input_shape'][2:]
    assert props['task'] == 'detect'
    assert model.opset_import[0].version == 17


def _letterbox(img: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple]:
    """Letterbox like Ultralytics: scale to fit, pad centred with 114, RGB, NCHW, /255."""
    h, w = img.shape[:2]
    r = min(size[0] / h, size[1] / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (size[1] - nw) / 2, (size[0] - nh) / 2
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    img = cv2.copyMakeBorder(img, top, int(round(dh + 0.1)), left, int(round(dw + 0.1)),
                             cv2.BORDER_CONSTANT, value=(114, 114, 114))
    x = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32).transpose(2, 0, 1) / 255.0
    return x[None], r, (left, top)


def _decode(y: np.ndarray, r: float, pad: tuple, w: int, h: int) -> tuple:
    """Decode one YOLOv8-layout output: best class, score > 0.25, class-aware NMS 0.5."""
    pred = y[0].T
    cls = pred[:, 4:].argmax(1)
    score = pred[np.arange(len(pred)), 4 + cls]
    keep = score > 0.25
    pred, cls, score = pred[keep], cls[keep], score[keep]
    xywh = np.stack([pred[:, 0] - pred[:, 2] / 2, pred[:, 1] - pred[:, 3] / 2,
                     pred[:, 2], pred[:, 3]], 1)
    idx = opencv_batched_nms(xywh.tolist(), score.tolist(), cls.tolist(), 0.25, 0.5)
    boxes = xywh[idx].copy()
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - pad[0]) / r).clip(0, w)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - pad[1]) / r).clip(0, h)
    return boxes, score[idx], cls[idx]


@pytest.mark.parametrize('width,height,seed', [(640, 480, 1000), (320, 240, 0)])
def test_accuracy_on_held_out_frames(meta: dict, session: ort.InferenceSession,
                                     width: int, height: int, seed: int) -> None:
    """A short held-out run keeps most of the recorded mAP (the full figure is in the JSON)."""
    scene = SyntheticScene(width=width, height=height, seed=seed)
    preds, gts = [], []
    for _, img, gt in scene.frames(0, 120, 4):
        x, r, pad = _letterbox(img, tuple(meta['input_shape'][2:]))
        y = session.run([meta['output_name']], {meta['input_name']: x})[0]
        preds.append(_decode(y, r, pad, width, height))
        gts.append(gt)
    result = evaluate_detections(preds, gts, len(CLASS_NAMES))
    assert result.map50 >= 0.75, result


@pytest.mark.parametrize('seed', range(5))
def test_opencv_nms_fallback_keeps_what_nmsboxesbatched_keeps(seed: int) -> None:
    # OpenCV 4.5/4.6 have no NMSBoxesBatched; the per-class NMSBoxes fallback must agree.
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (60, 2))
    xywh = np.concatenate([xy, rng.uniform(10, 80, (60, 2))], 1)
    scores = rng.uniform(0, 1, 60)
    classes = rng.integers(0, 4, 60)
    fallback = opencv_batched_nms(xywh, scores, classes, 0.25, 0.5, batched=False)
    assert len(fallback) and list(scores[fallback]) == sorted(scores[fallback], reverse=True)
    # Independent of OpenCV's version: the package's own class-aware NMS keeps the same boxes.
    from edge_infer_ros.stages.nms import batched_nms
    valid = np.flatnonzero(scores > 0.25)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    ours = valid[batched_nms(xyxy[valid], scores[valid], classes[valid], 0.5, 1000)]
    assert sorted(fallback.tolist()) == sorted(ours.tolist())
    if hasattr(cv2.dnn, 'NMSBoxesBatched'):
        batched = opencv_batched_nms(xywh, scores, classes, 0.25, 0.5, batched=True)
        assert sorted(batched.tolist()) == sorted(fallback.tolist())

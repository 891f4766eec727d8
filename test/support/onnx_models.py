"""
Tiny ONNX detector models with a known output, built with onnx.helper, for tests.

Why: tests must not depend on the shipped (trained) model, yet should go through a real ONNX
Runtime session. Each model here outputs a fixed tensor planted by the test, computed as
``constant + 0 * ReduceMean(input)`` so that the graph still depends on its input (ONNX
Runtime cannot fold it away and shape checks on the input stay real); the detections a decoder
must find are therefore known exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from edge_infer_ros.inference.model_info import file_sha256
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

#: What ONNX Runtime 1.32 reads; newer onnx releases default to a newer IR.
IR_VERSION = 9
OPSET = 17

PathLike = Union[str, os.PathLike]
_ELEM = {'float32': TensorProto.FLOAT, 'float16': TensorProto.FLOAT16}


def make_constant_output_model(path: PathLike, output: np.ndarray,
                               input_hw: tuple[int, int] = (32, 32), *,
                               dtype: str = 'float32', input_name: str = 'images',
                               output_name: str = 'output0',
                               input_dims: Optional[Sequence[Union[int, str]]] = None,
                               output_dims: Optional[Sequence[Union[int, str]]] = None,
                               extra_outputs: int = 0,
                               metadata: Optional[dict[str, str]] = None,
                               slow_matmuls: int = 0) -> Path:
    """
    Write a model whose output is always ``output``; return the path.

    ``input_dims`` / ``output_dims`` override the declared shapes (strings make dims
    dynamic); by default they are [1, 3, H, W] and ``output.shape``. ``extra_outputs`` adds
    more outputs (copies of the first) to test multi-output handling. ``slow_matmuls`` adds
    that many 512x512 matrix products that depend on the input (a slow model, same output).
    """
    elem = _ELEM[dtype]
    out = np.asarray(output, dtype=dtype)
    in_dims = list(input_dims) if input_dims is not None else [1, 3, *input_hw]
    out_dims = list(output_dims) if output_dims is not None else list(out.shape)
    nodes = [
        helper.make_node('ReduceMean', ['images_in'], ['mean'], keepdims=0),
        helper.make_node('Mul', ['mean', 'zero'], ['nothing']),
        helper.make_node('Add', ['planted', 'nothing'], [output_name]),
    ]
    inits = [numpy_helper.from_array(out, 'planted'),
             numpy_helper.from_array(np.zeros((), dtype=dtype), 'zero')]
    nodes.insert(0, helper.make_node('Identity', [input_name], ['images_in']))
    if slow_matmuls:  # work ONNX Runtime cannot fold: it depends on the input's mean
        inits.append(numpy_helper.from_array(np.full((512, 512), 1e-3, dtype), 'weights'))
        work = [helper.make_node('Mul', ['weights', 'mean'], ['work0'])]
        for i in range(slow_matmuls):
            work.append(helper.make_node('MatMul', [f'work{i}', 'weights'], [f'work{i + 1}']))
        work += [helper.make_node('ReduceMean', [f'work{slow_matmuls}'], ['work_mean'],
                                  keepdims=0),
                 helper.make_node('Mul', ['work_mean', 'zero'], ['more_nothing'])]
        nodes[2:2] = work  # after ReduceMean(images_in) -> mean
        nodes[-1] = helper.make_node('Add', ['planted', 'nothing'], ['planted_out'])
        nodes.append(helper.make_node('Add', ['planted_out', 'more_nothing'], [output_name]))
    outputs = [helper.make_tensor_value_info(output_name, elem, out_dims)]
    for i in range(extra_outputs):
        name = f'extra{i}'
        nodes.append(helper.make_node('Identity', [output_name], [name]))
        outputs.append(helper.make_tensor_value_info(name, elem, out_dims))
    graph = helper.make_graph(nodes, 'planted_detector',
                              [helper.make_tensor_value_info(input_name, elem, in_dims)],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                              producer_name='edge_infer_ros-tests')
    model.ir_version = IR_VERSION
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def yolov8_output(boxes_cxcywh: np.ndarray, class_scores: np.ndarray) -> np.ndarray:
    """Assemble a [1, 4+C, N] YOLOv8 output from (N, 4) cx,cy,w,h boxes and (N, C) scores."""
    boxes = np.asarray(boxes_cxcywh, np.float32)
    scores = np.asarray(class_scores, np.float32)
    return np.ascontiguousarray(np.concatenate([boxes.T, scores.T], axis=0)[None])


def yolov5_output(boxes_cxcywh: np.ndarray, objectness: np.ndarray,
                  class_probs: np.ndarray) -> np.ndarray:
    """Assemble a [1, N, 5+C] YOLOv5 output from boxes (N, 4), objectness (N,), probs (N, C)."""
    boxes = np.asarray(boxes_cxcywh, np.float32)
    obj = np.asarray(objectness, np.float32)[:, None]
    return np.concatenate([boxes, obj, np.asarray(class_probs, np.float32)], axis=1)[None]


def background(num_anchors: int, num_classes: int, input_hw: tuple[int, int],
               seed: int = 0, max_score: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Random low-score candidates (boxes cxcywh (N, 4), scores (N, C)) that no test keeps."""
    rng = np.random.default_rng(seed)
    h, w = input_hw
    boxes = np.stack([rng.uniform(0, w, num_anchors), rng.uniform(0, h, num_anchors),
                      rng.uniform(1, w / 4, num_anchors), rng.uniform(1, h / 4, num_anchors)],
                     axis=1)
    scores = rng.uniform(0, max_score, (num_anchors, num_classes))
    return boxes.astype(np.float32), scores.astype(np.float32)


def make_yolov8_model(path: PathLike, num_classes: int = 4, num_anchors: int = 64,
                      input_hw: tuple[int, int] = (32, 32),
                      boxes: Optional[np.ndarray] = None, scores: Optional[np.ndarray] = None,
                      **kwargs: Any) -> tuple[Path, np.ndarray]:
    """
    Write a YOLOv8-layout model [1, 4+C, N] with planted boxes and class scores.

    ``boxes`` (N, 4) cx,cy,w,h and ``scores`` (N, C) default to low-score background.
    Returns (path, the exact output tensor). Other keyword arguments go to
    :func:`make_constant_output_model`.
    """
    bg_boxes, bg_scores = background(num_anchors, num_classes, input_hw)
    boxes = bg_boxes if boxes is None else boxes
    scores = bg_scores if scores is None else scores
    output = yolov8_output(boxes, scores).astype(kwargs.get('dtype', 'float32'))
    return make_constant_output_model(path, output, input_hw, **kwargs), output


def make_yolov5_model(path: PathLike, num_classes: int = 4, num_anchors: int = 64,
                      input_hw: tuple[int, int] = (32, 32),
                      boxes: Optional[np.ndarray] = None,
                      objectness: Optional[np.ndarray] = None,
                      class_probs: Optional[np.ndarray] = None,
                      **kwargs: Any) -> tuple[Path, np.ndarray]:
    """
    Write a YOLOv5-layout model [1, N, 5+C] with planted boxes, objectness and class probs.

    Defaults are low-score background. Returns (path, the exact output tensor).
    """
    bg_boxes, bg_scores = background(num_anchors, num_classes, input_hw)
    boxes = bg_boxes if boxes is None else boxes
    class_probs = bg_scores if class_probs is None else class_probs
    if objectness is None:
        objectness = np.full(len(boxes), 0.5, np.float32)
    output = yolov5_output(boxes, objectness, class_probs).astype(kwargs.get('dtype', 'float32'))
    return make_constant_output_model(path, output, input_hw, **kwargs), output


def write_ultralytics_metadata(path: PathLike, names: Sequence[str],
                               imgsz: Optional[Sequence[int]] = None,
                               extra: Optional[dict[str, str]] = None) -> None:
    """Add Ultralytics-style ``metadata_props`` (names as a dict string, imgsz) to a model file."""
    model = onnx.load(str(path))
    props = {'names': str(dict(enumerate(names)))}
    if imgsz is not None:
        props['imgsz'] = str(list(imgsz))
    props.update(extra or {})
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def write_metadata_json(model_path: PathLike, json_path: Optional[PathLike] = None,
                        **fields: Any) -> Path:
    """
    Write the metadata JSON beside a model (``<model>.json``), sha256 filled in by default.

    Pass ``sha256=...`` to plant a wrong hash, or any other metadata key.
    """
    model_path = Path(model_path)
    meta = {'sha256': file_sha256(model_path)}
    meta.update(fields)
    target = Path(json_path) if json_path is not None else model_path.with_suffix('.json')
    target.write_text(json.dumps(meta, indent=2), encoding='utf-8')
    return target


def make_yolov8_conv_model(path: PathLike, num_classes: int = 4, imgsz: int = 64,
                           widths: Sequence[int] = (8, 16, 24, 32, 48), seed: int = 0,
                           metadata_json: bool = True) -> Path:
    """
    Write a small YOLOv8-architecture detector with random weights; return the path.

    Why: the quantizer needs a real convolutional graph (a planted constant has nothing to
    quantize). Like YOLOv8: a strided Conv+SiLU backbone to strides 8, 16 and 32, a decoupled
    head per level (box branch and class branch, each Conv 3x3 then Conv 1x1, sigmoid class
    scores), levels flattened and concatenated into the ``[1, 4 + C, N]`` output with boxes in
    input pixels. ``widths``: stem and the four stride-2 stages (the stem is stride 2 too).
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    count = [0]

    def name(prefix: str) -> str:
        count[0] += 1
        return f'{prefix}_{count[0]}'

    def conv(x: str, c_in: int, c_out: int, k: int, s: int, act: bool = True) -> str:
        w = name('w')
        b = name('b')
        std = np.sqrt(2.0 / (c_in * k * k))
        inits.append(numpy_helper.from_array(
            rng.normal(0, std, (c_out, c_in, k, k)).astype(np.float32), w))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, c_out).astype(np.float32), b))
        y = name('conv')
        nodes.append(helper.make_node('Conv', [x, w, b], [y], name=y, kernel_shape=[k, k],
                                      strides=[s, s], pads=[k // 2] * 4))
        if not act:
            return y
        sig = name('sig')
        out = name('silu')
        nodes.append(helper.make_node('Sigmoid', [y], [sig], name=sig))
        nodes.append(helper.make_node('Mul', [y, sig], [out], name=out))
        return out

    x = 'images'
    c = 3
    feats = []
    for i, width in enumerate(widths):
        x = conv(x, c, width, 3, 2)
        c = width
        if i >= 2:   # strides 8, 16, 32
            feats.append((x, c, imgsz // 2 ** (i + 1)))
    boxes_parts, cls_parts = [], []
    for f, c_f, grid in feats:
        stride = imgsz // grid
        bx = conv(conv(f, c_f, c_f, 3, 1), c_f, 4, 1, 1, act=False)
        cl = conv(conv(f, c_f, c_f, 3, 1), c_f, num_classes, 1, 1, act=False)
        # Boxes: sigmoid(raw) * 4 strides, plus the cell centre for cx, cy (in pixels).
        sb = name('boxsig')
        nodes.append(helper.make_node('Sigmoid', [bx], [sb], name=sb))
        scale = name('scale')
        inits.append(numpy_helper.from_array(np.full((1, 4, 1, 1), 4.0 * stride, np.float32),
                                             scale))
        scaled = name('boxscaled')
        nodes.append(helper.make_node('Mul', [sb, scale], [scaled], name=scaled))
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing='ij')
        offset = np.zeros((1, 4, grid, grid), np.float32)
        offset[0, 0] = (xs + 0.5) * stride - 2.0 * stride
        offset[0, 1] = (ys + 0.5) * stride - 2.0 * stride
        off = name('offset')
        inits.append(numpy_helper.from_array(offset, off))
        box = name('box')
        nodes.append(helper.make_node('Add', [scaled, off], [box], name=box))
        sc = name('clssig')
        nodes.append(helper.make_node('Sigmoid', [cl], [sc], name=sc))
        for src, ch, parts in ((box, 4, boxes_parts), (sc, num_classes, cls_parts)):
            shp = name('shp')
            inits.append(numpy_helper.from_array(np.array([1, ch, grid * grid], np.int64), shp))
            flat = name('flat')
            nodes.append(helper.make_node('Reshape', [src, shp], [flat], name=flat))
            parts.append(flat)
    nodes.append(helper.make_node('Concat', boxes_parts, ['boxes_all'], name='cat_boxes', axis=2))
    nodes.append(helper.make_node('Concat', cls_parts, ['cls_all'], name='cat_cls', axis=2))
    nodes.append(helper.make_node('Concat', ['boxes_all', 'cls_all'], ['output0'],
                                  name='cat_out', axis=1))
    anchors = sum(g * g for _, _, g in feats)
    graph = helper.make_graph(
        nodes, 'yolov8_shaped',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info('output0', TensorProto.FLOAT,
                                       [1, 4 + num_classes, anchors])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                              producer_name='edge_infer_ros-tests')
    model.ir_version = IR_VERSION
    names = [f'class_{i}' for i in range(num_classes)]
    model.metadata_props.add(key='names', value=str(dict(enumerate(names))))
    model.metadata_props.add(key='imgsz', value=str([imgsz, imgsz]))
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    if metadata_json:
        write_metadata_json(path, class_names=names)
    return path

#!/usr/bin/env python3
"""
Train the package's small detector on synthetic scenes (CPU) and export it to ONNX.

Why this script ships: ``models/detector.onnx`` is a build product, and anyone
must be able to check how it was made and make it again.  It renders training
frames with ``edge_infer_ros.stages.synthetic`` (train seeds), trains a tiny
anchor-free two-scale YOLO-style detector in PyTorch on the CPU, exports it in
the YOLOv8 output layout (``[1, 4 + C, N]``: cx, cy, w, h in input pixels, then
sigmoid class scores; no objectness, no NMS), evaluates the ONNX file with
onnxruntime on a held-out seed with ``edge_infer_ros.inference.evaluation`` and writes
``detector.onnx`` and ``detector.json``.

Run from the repository root in the training venv (see models/README.md)::

    /work/train-venv/bin/python models/train_detector.py --out models/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from pathlib import Path
import platform
import sys
import time
from typing import Optional, Sequence

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_infer_ros.inference.evaluation import evaluate_detections  # noqa: E402, I100, I202
from edge_infer_ros.stages.synthetic import CLASS_NAMES, SyntheticScene  # noqa: E402

NUM_CLASSES = len(CLASS_NAMES)
STRIDES = (8, 16)
PAD_VALUE = 114
MAX_GT = 10


# ---------------------------------------------------------------------------- preprocessing
def letterbox(img_bgr: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """
    Letterbox a BGR image to ``size`` x ``size`` RGB exactly as Ultralytics' LetterBox does.

    Returns the (size, size, 3) uint8 RGB image, the scale and the (left, top) padding.
    """
    h, w = img_bgr.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    if (new_w, new_h) != (w, h):
        img_bgr = cv2.resize(img_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT,
                             value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), r, (left, top)


def unletterbox(boxes: np.ndarray, r: float, pad: tuple[int, int], w: int, h: int) -> np.ndarray:
    """Map xyxy boxes from letterboxed input pixels back to original image pixels."""
    out = boxes.astype(np.float64).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - pad[0]) / r
    out[:, [1, 3]] = (out[:, [1, 3]] - pad[1]) / r
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def decode_yolov8(output: np.ndarray, conf: float = 0.25,
                  iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Decode one ``[4 + C, N]`` YOLOv8-layout output: best class, threshold, class-aware NMS.

    Returns xyxy boxes (input pixels), scores and class ids.
    """
    pred = output.T
    cls = pred[:, 4:]
    cid = cls.argmax(1)
    score = cls[np.arange(len(cls)), cid]
    keep = score > conf
    pred, cid, score = pred[keep], cid[keep], score[keep]
    xyxy = np.concatenate([pred[:, :2] - pred[:, 2:4] / 2, pred[:, :2] + pred[:, 2:4] / 2], 1)
    # Class-aware NMS: offset each class far apart, then plain greedy NMS.
    off = xyxy + cid[:, None] * 4096.0
    order = np.argsort(-score)
    kept = []
    while order.size:
        i = order[0]
        kept.append(i)
        rest = order[1:]
        xx1 = np.maximum(off[i, 0], off[rest, 0])
        yy1 = np.maximum(off[i, 1], off[rest, 1])
        xx2 = np.minimum(off[i, 2], off[rest, 2])
        yy2 = np.minimum(off[i, 3], off[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        area_i = (off[i, 2] - off[i, 0]) * (off[i, 3] - off[i, 1])
        area_r = (off[rest, 2] - off[rest, 0]) * (off[rest, 3] - off[rest, 1])
        ious = inter / np.maximum(area_i + area_r - inter, 1e-9)
        order = rest[ious <= iou]
    kept = np.array(kept, np.int64)
    return xyxy[kept], score[kept], cid[kept]


# ---------------------------------------------------------------------------- data
def scene_config(seed: int) -> dict:
    """
    Return the SyntheticScene arguments used for training seed ``seed``.

    Resolutions and noise vary across seeds so the model sees several letterbox
    shapes and noise levels; object counts vary to get crowded, occluded frames.
    """
    rng = np.random.default_rng([seed, 77])
    res = [(640, 480), (320, 240), (640, 480), (1280, 720), (960, 540), (800, 600),
           (480, 360), (1920, 1080)]
    w, h = res[seed % len(res)]
    lo = int(rng.integers(1, 4))
    return {'width': w, 'height': h, 'seed': seed, 'min_objects': lo,
            'max_objects': int(rng.integers(max(lo, 4), 9)),
            'noise_sigma': float(rng.uniform(2.0, 12.0))}


def render_set(configs: Sequence[dict], frames: int, step: int, size: int,
               label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Render and letterbox ``frames`` frames per config; return images, boxes, classes.

    Images are (F, size, size, 3) uint8 RGB; boxes (F, MAX_GT, 4) xyxy in input
    pixels; classes (F, MAX_GT) int64 with -1 for padding.
    """
    n = len(configs) * frames
    imgs = np.empty((n, size, size, 3), np.uint8)
    boxes = np.zeros((n, MAX_GT, 4), np.float32)
    classes = np.full((n, MAX_GT), -1, np.int64)
    k = 0
    t0 = time.time()
    for cfg in configs:
        scene = SyntheticScene(**cfg)
        buf = np.empty((scene.height, scene.width, 3), np.uint8)
        for j in range(frames):
            img, gt = scene.render(j * step, buf)
            lb, r, (px, py) = letterbox(img, size)
            imgs[k] = lb
            m = min(len(gt), MAX_GT)
            b = gt.boxes[:m] * r
            b[:, [0, 2]] += px
            b[:, [1, 3]] += py
            boxes[k, :m] = b
            classes[k, :m] = gt.class_ids[:m]
            k += 1
    print(f'[data] {label}: {n} frames from {len(configs)} seeds in {time.time() - t0:.1f} s',
          flush=True)
    return imgs, boxes, classes


# ---------------------------------------------------------------------------- model
class ConvBnAct(nn.Sequential):
    """Conv + BatchNorm + SiLU, the only building block."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, k: int = 3) -> None:
        """Make the block (odd kernels are 'same'-padded, even ones unpadded)."""
        pad = k // 2 if k % 2 else 0
        super().__init__(nn.Conv2d(c_in, c_out, k, stride, pad, bias=False),
                         nn.BatchNorm2d(c_out), nn.SiLU(inplace=True))


class TinyDetector(nn.Module):
    """
    Tiny two-scale detector: patchify stem, plain convs, top-down FPN, stride 8 and 16 heads.

    ``forward`` returns raw predictions ``(B, 4 + C, N)``: dx, dy (cell offsets in
    strides), log w, log h (in strides), class logits, N = anchors of both levels.
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = (24, 32, 64, 96)) -> None:
        """Build the network."""
        super().__init__()
        w1, w2, w3, w4 = widths
        self.num_classes = num_classes
        # Patchify stem (4x4, stride 4): no full-resolution activations, which is most of
        # the cost of a strided 3x3 stem on a CPU; flat synthetic shapes do not need them.
        self.stem = nn.Sequential(ConvBnAct(3, w1, 4, k=4), ConvBnAct(w1, w1))
        self.c3 = nn.Sequential(ConvBnAct(w1, w2, 2), ConvBnAct(w2, w2))
        self.c4 = nn.Sequential(ConvBnAct(w2, w3, 2), ConvBnAct(w3, w3))
        self.c5 = nn.Sequential(ConvBnAct(w3, w4, 2), ConvBnAct(w4, w4))
        self.lat5 = ConvBnAct(w4, w3, k=1)
        self.p4 = ConvBnAct(w3, w3)
        self.lat4 = ConvBnAct(w3, w2, k=1)
        self.p3 = ConvBnAct(w2, w2)
        self.head3 = nn.Sequential(ConvBnAct(w2, w2), nn.Conv2d(w2, 4 + num_classes, 1))
        self.head4 = nn.Sequential(ConvBnAct(w3, w3), nn.Conv2d(w3, 4 + num_classes, 1))
        prior = -math.log((1 - 0.01) / 0.01)
        for head in (self.head3, self.head4):
            nn.init.zeros_(head[-1].bias)
            nn.init.normal_(head[-1].weight, std=0.01)
            with torch.no_grad():
                head[-1].bias[4:] = prior

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return raw predictions (B, 4 + C, N)."""
        x = self.stem(x)
        c3 = self.c3(x)
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        p4 = self.p4(c4 + F.interpolate(self.lat5(c5), scale_factor=2.0, mode='nearest'))
        p3 = self.p3(c3 + F.interpolate(self.lat4(p4), scale_factor=2.0, mode='nearest'))
        o3 = self.head3(p3)
        o4 = self.head4(p4)
        return torch.cat([o3.flatten(2), o4.flatten(2)], 2)


def make_anchors(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return anchor centres (N, 2) in input pixels and their strides (N,), level by level."""
    pts, strides = [], []
    for s in STRIDES:
        n = size // s
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing='ij')
        pts.append(torch.stack([xs, ys], -1).reshape(-1, 2).float() * s + s / 2)
        strides.append(torch.full((n * n,), float(s)))
    return torch.cat(pts), torch.cat(strides)


def decode_raw(raw: torch.Tensor, anchors: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """Turn raw (B, 4 + C, N) into (B, 4, N) cx, cy, w, h boxes in input pixels."""
    s = strides[None, None, :]
    xy = anchors.T[None] + raw[:, 0:2] * s
    wh = torch.exp(raw[:, 2:4].clamp(-6.0, 6.0)) * s
    return torch.cat([xy, wh], 1)


class ExportModel(nn.Module):
    """The network plus the YOLOv8-layout decode, as it goes into the ONNX file."""

    def __init__(self, net: TinyDetector, size: int) -> None:
        """Wrap ``net`` for input ``size`` x ``size``."""
        super().__init__()
        self.net = net
        anchors, strides = make_anchors(size)
        self.register_buffer('anchors', anchors.T.contiguous()[None])   # (1, 2, N)
        self.register_buffer('strides', strides[None, None])           # (1, 1, N)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return (1, 4 + C, N): cx, cy, w, h (input pixels), sigmoid class scores."""
        raw = self.net(images)
        xy = self.anchors + raw[:, 0:2] * self.strides
        wh = torch.exp(raw[:, 2:4].clamp(-6.0, 6.0)) * self.strides
        return torch.cat([xy, wh, torch.sigmoid(raw[:, 4:])], 1)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that follows a Conv2d into the conv (inference only)."""
    for name, child in model.named_children():
        if isinstance(child, ConvBnAct):
            conv, bn = child[0], child[1]
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                              conv.stride, conv.padding, bias=True)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale[:, None, None, None])
                fused.bias.copy_(bn.bias - bn.running_mean * scale)
            setattr(model, name, nn.Sequential(fused, nn.SiLU(inplace=True)))
        else:
            fuse_conv_bn(child)
    return model


# ---------------------------------------------------------------------------- loss
def box_giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (IoU, GIoU) of matching xyxy boxes ``a`` and ``b`` (K, 4)."""
    iw = (torch.min(a[:, 2], b[:, 2]) - torch.max(a[:, 0], b[:, 0])).clamp(min=0)
    ih = (torch.min(a[:, 3], b[:, 3]) - torch.max(a[:, 1], b[:, 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    cw = torch.max(a[:, 2], b[:, 2]) - torch.min(a[:, 0], b[:, 0])
    ch = torch.max(a[:, 3], b[:, 3]) - torch.min(a[:, 1], b[:, 1])
    hull = cw * ch + 1e-7
    return iou, iou - (hull - union) / hull


def assign(gt_boxes: torch.Tensor, gt_cls: torch.Tensor, anchors: torch.Tensor,
           strides: torch.Tensor, radius: float = 2.5) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Centre-sampling assignment (FCOS / YOLOX style) of anchors to ground truth.

    An anchor is a candidate for a box if its centre lies inside the box and within
    ``radius`` strides of the box centre, on a level that suits the box size; each
    box also always gets its nearest anchor on its best level.  An anchor claimed by
    several boxes takes the smallest.  Returns the matched box index (B, N) (-1 for
    background) and a (B, N) bool positive mask.
    """
    valid = gt_cls >= 0                                                   # (B, M)
    ax, ay = anchors[:, 0], anchors[:, 1]                                 # (N,)
    x1, y1, x2, y2 = (gt_boxes[..., i][..., None] for i in range(4))      # (B, M, 1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = torch.max(x2 - x1, y2 - y1)
    inside = (ax > x1) & (ax < x2) & (ay > y1) & (ay < y2)
    near = ((ax - cx).abs() < radius * strides) & ((ay - cy).abs() < radius * strides)
    # Level ranges (overlapping): stride 8 for sides < 64 px, stride 16 for sides > 32 px.
    level_ok = torch.where(strides == 8, side < 64, side > 32)
    cand = inside & near & level_ok & valid[..., None]                   # (B, M, N)
    # Nearest anchor on the best level for every box, so tiny boxes are never unassigned.
    best_stride = torch.where(side < 48, 8.0, 16.0)                       # (B, M, 1)
    dist = (ax - cx) ** 2 + (ay - cy) ** 2
    dist = torch.where(strides == best_stride, dist, torch.full_like(dist, 1e12))
    nearest = dist.argmin(-1)                                             # (B, M)
    cand.scatter_(2, nearest[..., None], valid[..., None])
    area = ((x2 - x1) * (y2 - y1)).expand_as(cand)
    area = torch.where(cand, area, torch.full_like(area, 1e12))
    best_area, match = area.min(1)                                        # (B, N)
    pos = best_area < 1e12
    return torch.where(pos, match, torch.full_like(match, -1)), pos


def detection_loss(raw: torch.Tensor, gt_boxes: torch.Tensor, gt_cls: torch.Tensor,
                   anchors: torch.Tensor, strides: torch.Tensor,
                   box_weight: float = 5.0) -> tuple[torch.Tensor, dict]:
    """Return the training loss: IoU-aware BCE on class scores plus GIoU on positives."""
    b, _, n = raw.shape
    match, pos = assign(gt_boxes, gt_cls, anchors, strides)
    pred = decode_raw(raw, anchors, strides)                              # (B, 4, N)
    pxyxy = torch.cat([pred[:, :2] - pred[:, 2:] / 2, pred[:, :2] + pred[:, 2:] / 2], 1)
    pxyxy = pxyxy.permute(0, 2, 1)                                        # (B, N, 4)
    logits = raw[:, 4:].permute(0, 2, 1)                                  # (B, N, C)
    target = torch.zeros_like(logits)
    num_pos = int(pos.sum())
    if num_pos:
        bi, ai = pos.nonzero(as_tuple=True)
        mi = match[bi, ai]
        tbox = gt_boxes[bi, mi]
        tcls = gt_cls[bi, mi]
        iou, giou = box_giou(pxyxy[bi, ai], tbox)
        box_loss = (1.0 - giou).mean()
        target[bi, ai, tcls] = iou.detach().clamp(min=0.05)
    else:
        box_loss = raw.sum() * 0.0
    cls_loss = F.binary_cross_entropy_with_logits(logits, target, reduction='sum')
    cls_loss = cls_loss / max(num_pos, 1)
    loss = cls_loss + box_weight * box_loss
    return loss, {'cls': cls_loss.item(), 'box': box_loss.item(), 'pos': num_pos / b}


# ---------------------------------------------------------------------------- evaluation
def evaluate_onnx(path: Path, seed: int, frames: int, size: int, threads: int,
                  width: int = 640, height: int = 480) -> dict:
    """Evaluate an ONNX detector on ``frames`` frames of held-out scene ``seed``."""
    sess = make_session(path, threads)
    scene = SyntheticScene(width=width, height=height, seed=seed)
    preds, gts = [], []
    for _, img, gt in scene.frames(0, frames):
        lb, r, pad = letterbox(img, size)
        x = (lb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = sess.run(['output0'], {'images': np.ascontiguousarray(x)})[0][0]
        boxes, scores, cls = decode_yolov8(out, 0.25, 0.5)
        preds.append((unletterbox(boxes, r, pad, width, height), scores, cls))
        gts.append(gt)
    res = evaluate_detections(preds, gts, NUM_CLASSES, 0.5)
    return {
        'seed': seed, 'frames': frames, 'width': width, 'height': height,
        'score_threshold': 0.25, 'nms_iou': 0.5, 'iou_threshold': 0.5,
        'map50': round(res.map50, 4),
        'ap_per_class': {CLASS_NAMES[c]: round(v, 4) for c, v in res.ap_per_class.items()},
        'per_class_recall': {CLASS_NAMES[c]: round(v, 4)
                             for c, v in res.recall_per_class.items()},
        'per_class_precision': {CLASS_NAMES[c]: round(v, 4)
                                for c, v in res.precision_per_class.items()},
        'num_gt': {CLASS_NAMES[c]: v for c, v in res.num_gt_per_class.items()},
    }


@torch.no_grad()
def evaluate_torch(model: nn.Module, imgs: np.ndarray, gts: list, metas: list, size: int,
                   anchors: torch.Tensor, strides: torch.Tensor) -> float:
    """Return mAP@0.5 of the torch model on pre-rendered validation frames."""
    model.eval()
    preds = []
    for i in range(0, len(imgs), 32):
        x = to_tensor(imgs[i:i + 32])
        raw = model(x)
        out = torch.cat([decode_raw(raw, anchors, strides), torch.sigmoid(raw[:, 4:])], 1)
        for j, o in enumerate(out.numpy()):
            r, pad, w, h = metas[i + j]
            boxes, scores, cls = decode_yolov8(o, 0.25, 0.5)
            preds.append((unletterbox(boxes, r, pad, w, h), scores, cls))
    model.train()
    return evaluate_detections(preds, gts, NUM_CLASSES, 0.5).map50


def make_session(path: Path, threads: int) -> ort.InferenceSession:
    """Open an onnxruntime CPU session with ``threads`` intra-op threads."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=['CPUExecutionProvider'])


def time_onnx(path: Path, size: int, threads: int, runs: int = 200) -> dict:
    """Return p50 / p99 latency (ms) of one ``session.run`` on a real letterboxed frame."""
    sess = make_session(path, threads)
    img, _ = SyntheticScene(seed=4242).render(0)
    lb, _, _ = letterbox(img, size)
    x = np.ascontiguousarray((lb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])
    for _ in range(20):
        sess.run(['output0'], {'images': x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(['output0'], {'images': x})
        ts.append((time.perf_counter() - t) * 1e3)
    return {'p50': round(float(np.percentile(ts, 50)), 3),
            'p99': round(float(np.percentile(ts, 99)), 3),
            'mean': round(float(np.mean(ts)), 3), 'runs': runs, 'threads': threads,
            'cpu': platform.processor() or platform.machine(),
            'onnxruntime': ort.__version__}


# ---------------------------------------------------------------------------- training
def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """Turn (B, H, W, 3) uint8 RGB into a channels-last float (B, 3, H, W) tensor in [0, 1]."""
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


def augment(imgs: np.ndarray, boxes: np.ndarray, size: int,
            rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip and per-image colour gain; returns tensors."""
    x = to_tensor(imgs)
    b = torch.from_numpy(boxes.copy())
    flip = torch.from_numpy(rng.random(len(imgs)) < 0.5)
    if flip.any():
        x[flip] = x[flip].flip(3)
        fb = b[flip]
        fb[..., [0, 2]] = size - fb[..., [2, 0]]
        b[flip] = fb
    gain = torch.from_numpy(rng.uniform(0.8, 1.2, (len(imgs), 3, 1, 1)).astype(np.float32))
    x = (x * gain).clamp_(0, 1)
    return x.contiguous(memory_format=torch.channels_last), b


class Ema:
    """Exponential moving average of the weights (as in YOLOv5/v8), used for eval and export."""

    def __init__(self, model: nn.Module, decay: float = 0.999, tau: float = 500.0) -> None:
        """Start the average at the model's current weights."""
        import copy
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights of ``model`` into the average."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def export_onnx(model: TinyDetector, size: int, path: Path) -> None:
    """Export ``model`` (BN fused, sigmoid and box decode inside) with Ultralytics metadata."""
    import copy
    net = fuse_conv_bn(copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format))
    wrapped = ExportModel(net, size).eval()
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(wrapped, (dummy,), str(path), input_names=['images'],
                      output_names=['output0'], opset_version=17, dynamo=False,
                      do_constant_folding=True)
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    names = '{' + ', '.join(f'{i}: {n!r}' for i, n in enumerate(CLASS_NAMES)) + '}'
    meta = {
        'description': 'edge_infer_ros TinyDetector trained on synthetic scenes',
        'author': 'edge_infer_ros', 'license': 'Apache-2.0', 'version': '1.0.0',
        'task': 'detect', 'stride': str(max(STRIDES)), 'batch': '1',
        'imgsz': f'[{size}, {size}]', 'names': names,
    }
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = 'edge_infer_ros/models/train_detector.py'
    onnx.save(m, str(path))


def sha256(path: Path) -> str:
    """Return the hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse arguments, render data, train, export, evaluate and write the metadata."""
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    ap.add_argument('--out', type=Path, default=REPO / 'models')
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--imgsz', type=int, default=320)
    ap.add_argument('--train-seed-start', type=int, default=100,
                    help='first training seed (0, the camera default, stays unseen)')
    ap.add_argument('--train-seeds', type=int, default=400, help='number of training seeds')
    ap.add_argument('--frames-per-seed', type=int, default=18)
    ap.add_argument('--frame-step', type=int, default=13, help='index step between frames')
    ap.add_argument('--val-seed', type=int, default=900)
    ap.add_argument('--val-frames', type=int, default=100)
    ap.add_argument('--eval-seed', type=int, default=1000)
    ap.add_argument('--eval-frames', type=int, default=300)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0, help='torch / shuffling seed')
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    size = args.imgsz
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    seeds = range(args.train_seed_start, args.train_seed_start + args.train_seeds)
    train_cfgs = [scene_config(s) for s in seeds]
    imgs, boxes, classes = render_set(train_cfgs, args.frames_per_seed, args.frame_step,
                                      size, 'train')
    gt_cls_all = torch.from_numpy(classes)
    val_scene = SyntheticScene(seed=args.val_seed)
    val_imgs, val_gts, val_metas = [], [], []
    for _, img, gt in val_scene.frames(0, args.val_frames * 3, 3):
        lb, r, pad = letterbox(img, size)
        val_imgs.append(lb)
        val_gts.append(gt)
        val_metas.append((r, pad, val_scene.width, val_scene.height))
    val_imgs = np.stack(val_imgs)

    model = TinyDetector(NUM_CLASSES).to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    print(f'[model] TinyDetector, {n_params} parameters, input {size}x{size}', flush=True)
    anchors, strides = make_anchors(size)
    ema = Ema(model)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 5e-4},
                             {'params': no_decay, 'weight_decay': 0.0}], lr=args.lr)
    steps_per_epoch = len(imgs) // args.batch
    total = steps_per_epoch * args.epochs
    warmup = min(300, total // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))

    t_train = time.time()
    step = 0
    history = []
    for epoch in range(args.epochs):
        perm = rng.permutation(len(imgs))
        run = {'loss': 0.0, 'cls': 0.0, 'box': 0.0, 'pos': 0.0}
        t_ep = time.time()
        for bi in range(steps_per_epoch):
            idx = np.sort(perm[bi * args.batch:(bi + 1) * args.batch])
            x, b = augment(imgs[idx], boxes[idx], size, rng)
            for g in opt.param_groups:
                g['lr'] = lr_at(step)
            raw = model(x)
            loss, parts = detection_loss(raw, b, gt_cls_all[idx], anchors, strides)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            ema.update(model)
            step += 1
            run['loss'] += loss.item()
            for k in ('cls', 'box', 'pos'):
                run[k] += parts[k]
            if (bi + 1) % 50 == 0:
                k = bi + 1
                print(f'[train] epoch {epoch + 1}/{args.epochs} step {k}/{steps_per_epoch} '
                      f'loss {run["loss"] / k:.3f} cls {run["cls"] / k:.3f} '
                      f'box {run["box"] / k:.3f} pos/img {run["pos"] / k:.1f} '
                      f'lr {lr_at(step):.5f} {time.time() - t_ep:.0f} s', flush=True)
        val_map = evaluate_torch(ema.model, val_imgs, val_gts, val_metas, size, anchors, strides)
        history.append({'epoch': epoch + 1, 'loss': round(run['loss'] / steps_per_epoch, 4),
                        'val_map50': round(val_map, 4)})
        print(f'[epoch] {epoch + 1}/{args.epochs} loss {run["loss"] / steps_per_epoch:.3f} '
              f'val mAP@0.5 (seed {args.val_seed}) {val_map:.3f} '
              f'epoch {time.time() - t_ep:.0f} s, total {time.time() - t_start:.0f} s',
              flush=True)
    train_s = time.time() - t_train

    onnx_path = args.out / 'detector.onnx'
    export_onnx(ema.model, size, onnx_path)
    print(f'[export] {onnx_path} {onnx_path.stat().st_size / 1e6:.3f} MB', flush=True)
    evaluation = evaluate_onnx(onnx_path, args.eval_seed, args.eval_frames, size, args.threads)
    print(f'[eval] held-out seed {args.eval_seed}, {args.eval_frames} frames 640x480: '
          f'mAP@0.5 {evaluation["map50"]:.4f} recall {evaluation["per_class_recall"]}',
          flush=True)
    timing = time_onnx(onnx_path, size, args.threads)
    print(f'[time] onnxruntime {timing["threads"]} threads: p50 {timing["p50"]} ms '
          f'p99 {timing["p99"]} ms', flush=True)

    meta = {
        'name': 'edge_infer_ros_tinydet_320',
        'format': 'onnx',
        'file': 'detector.onnx',
        'sha256': sha256(onnx_path),
        'size_bytes': onnx_path.stat().st_size,
        'input_name': 'images',
        'input_shape': [1, 3, size, size],
        'output_name': 'output0',
        'output_shape': [1, 4 + NUM_CLASSES, sum((size // s) ** 2 for s in STRIDES)],
        'layout': 'yolov8',
        'class_names': list(CLASS_NAMES),
        'color_order': 'rgb',
        'normalize': 'div255',
        'letterbox_pad_value': PAD_VALUE,
        'architecture': {
            'name': 'TinyDetector', 'parameters': n_params, 'strides': list(STRIDES),
            'widths': [24, 32, 64, 96], 'stem': 'conv 4x4 stride 4', 'opset': 17,
            'head': 'anchor-free, box = anchor + offset*stride, exp(wh)*stride; sigmoid scores',
        },
        'train': {
            'seeds': [seeds[0], seeds[-1]], 'frames_per_seed': args.frames_per_seed,
            'resolutions': sorted({f"{c['width']}x{c['height']}" for c in train_cfgs}),
            'frame_step': args.frame_step, 'frames': int(len(imgs)), 'epochs': args.epochs,
            'batch': args.batch, 'lr': args.lr, 'torch_seed': args.seed,
            'threads': args.threads, 'time_s': round(train_s, 1),
            'total_time_s': round(time.time() - t_start, 1), 'torch': torch.__version__,
            'val_seed': args.val_seed, 'history': history,
        },
        'eval': evaluation,
        'inference_ms': timing,
    }
    with open(args.out / 'detector.json', 'w') as f:
        json.dump(meta, f, indent=2)
        f.write('\n')
    print(f'[done] {args.out / "detector.json"} total {time.time() - t_start:.0f} s', flush=True)
    return 0


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '2')
    sys.exit(main())

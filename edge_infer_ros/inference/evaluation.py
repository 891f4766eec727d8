"""
Detection accuracy: mAP@0.5 and per-class recall, in plain numpy.

Why here and not in a test helper: the training script, the shipped model's
metadata, the pipeline test and the benchmarks must all score detections the
same way, and none of them should need torch or ROS for it.

AP is the VOC / COCO all-point interpolated area under the precision-recall
curve of one class over all frames; predictions are matched greedily by
descending score, each ground-truth box at most once, to the unmatched
ground-truth box of the same class with the highest IoU if that IoU is at least
the threshold.  Recall is that of the predictions as given, so it is the recall
at whatever score threshold produced them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class EvaluationResult:
    """
    Scores of a set of predictions against ground truth.

    ``map50`` is the mean of ``ap_per_class`` over the classes that have at least
    one ground-truth box (0.0 when no class has any).
    """

    map50: float
    ap_per_class: dict[int, float]
    recall_per_class: dict[int, float]
    precision_per_class: dict[int, float]
    num_gt_per_class: dict[int, int]
    num_pred_per_class: dict[int, int]
    true_positives_per_class: dict[int, int]
    iou_threshold: float = 0.5
    num_frames: int = 0

    @property
    def mean_recall(self) -> float:
        """Return the mean recall over the classes that have ground truth."""
        vals = list(self.recall_per_class.values())
        return float(np.mean(vals)) if vals else 0.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the (N, M) IoU matrix of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """
    Return the all-point interpolated area under a precision-recall curve.

    ``recall`` must be non-decreasing (predictions sorted by descending score).
    """
    r = np.concatenate(([0.0], np.asarray(recall, np.float64), [1.0]))
    p = np.concatenate(([0.0], np.asarray(precision, np.float64), [0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]   # precision envelope
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _gt_arrays(gt: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (boxes, class_ids) of a GroundTruth-like object or a (boxes, class_ids) pair."""
    if hasattr(gt, 'boxes') and hasattr(gt, 'class_ids'):
        boxes, cls = gt.boxes, gt.class_ids
    else:
        boxes, cls = gt
    return (np.asarray(boxes, np.float64).reshape(-1, 4),
            np.asarray(cls, np.int64).reshape(-1))


def evaluate_detections(predictions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                        ground_truths: Sequence[Any], num_classes: int,
                        iou_threshold: float = 0.5) -> EvaluationResult:
    """
    Score per-frame predictions against per-frame ground truth.

    ``predictions[i]`` is ``(boxes (K, 4) xyxy, scores (K,), class_ids (K,))`` for
    frame ``i``; ``ground_truths[i]`` has ``boxes`` (N, 4) xyxy and ``class_ids`` (N,)
    (a ``GroundTruth`` or a plain pair).  Classes with no ground truth are left out
    of the mean and of the per-class dicts (but appear in ``num_pred_per_class``).
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f'{len(predictions)} prediction frames but '
                         f'{len(ground_truths)} ground-truth frames')
    scores_c: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    tp_c: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    n_gt = np.zeros(num_classes, np.int64)

    for pred, gt in zip(predictions, ground_truths):
        gt_boxes, gt_cls = _gt_arrays(gt)
        p_boxes = np.asarray(pred[0], np.float64).reshape(-1, 4)
        p_scores = np.asarray(pred[1], np.float64).reshape(-1)
        p_cls = np.asarray(pred[2], np.int64).reshape(-1)
        if not (len(p_boxes) == len(p_scores) == len(p_cls)):
            raise ValueError('prediction boxes, scores and class_ids differ in length')
        if np.any((gt_cls < 0) | (gt_cls >= num_classes)) or np.any(
                (p_cls < 0) | (p_cls >= num_classes)):
            raise ValueError('class id out of range')
        n_gt += np.bincount(gt_cls, minlength=num_classes)
        for c in np.unique(p_cls):
            sel = np.nonzero(p_cls == c)[0]
            order = sel[np.argsort(-p_scores[sel], kind='stable')]
            g = gt_boxes[gt_cls == c]
            tp = np.zeros(len(order), bool)
            if len(g):
                iou = box_iou(p_boxes[order], g)
                taken = np.zeros(len(g), bool)
                for i in range(len(order)):
                    cand = np.where(taken, -1.0, iou[i])
                    j = int(np.argmax(cand))
                    if cand[j] >= iou_threshold:
                        taken[j] = True
                        tp[i] = True
            scores_c[c].append(p_scores[order])
            tp_c[c].append(tp)

    ap: dict[int, float] = {}
    rec: dict[int, float] = {}
    prec: dict[int, float] = {}
    n_gt_d: dict[int, int] = {}
    n_pred_d: dict[int, int] = {}
    n_tp_d: dict[int, int] = {}
    for c in range(num_classes):
        scores = np.concatenate(scores_c[c]) if scores_c[c] else np.zeros(0)
        tps = np.concatenate(tp_c[c]) if tp_c[c] else np.zeros(0, bool)
        n_pred_d[c] = int(len(scores))
        if n_gt[c] == 0:
            continue
        order = np.argsort(-scores, kind='stable')
        tps = tps[order]
        ctp = np.cumsum(tps)
        cfp = np.cumsum(~tps)
        recall = ctp / n_gt[c]
        precision = ctp / np.maximum(ctp + cfp, 1)
        ap[c] = average_precision(recall, precision) if len(tps) else 0.0
        n_tp = int(ctp[-1]) if len(ctp) else 0
        rec[c] = n_tp / int(n_gt[c])
        prec[c] = n_tp / len(tps) if len(tps) else 0.0
        n_gt_d[c] = int(n_gt[c])
        n_tp_d[c] = n_tp
    map50 = float(np.mean(list(ap.values()))) if ap else 0.0
    return EvaluationResult(map50=map50, ap_per_class=ap, recall_per_class=rec,
                            precision_per_class=prec, num_gt_per_class=n_gt_d,
                            num_pred_per_class=n_pred_d, true_positives_per_class=n_tp_d,
                            iou_threshold=float(iou_threshold), num_frames=len(predictions))

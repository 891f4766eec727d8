"""
Tests of mAP@0.5 and per-class recall against hand-computed values.

Why: the shipped model's quality bar and the pipeline's accuracy test are only
as trustworthy as this scorer.
"""

from edge_infer_ros.inference.evaluation import average_precision, box_iou, evaluate_detections
from edge_infer_ros.stages.synthetic import GroundTruth
import numpy as np
import pytest


def _gt(boxes: list, classes: list) -> GroundTruth:
    """Build a GroundTruth from plain lists."""
    return GroundTruth(boxes=np.array(boxes, np.float32).reshape(-1, 4),
                       class_ids=np.array(classes, np.int32))


def _pred(boxes: list, scores: list, classes: list) -> tuple:
    """Build one frame's predictions from plain lists."""
    return (np.array(boxes, np.float64).reshape(-1, 4), np.array(scores, np.float64),
            np.array(classes, np.int64))


def test_box_iou_known_values() -> None:
    """Check IoU of identical, disjoint, half-overlapping and nested boxes."""
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10], [0, 0, 5, 5],
                  [10, 0, 20, 10]], float)
    iou = box_iou(a, b)
    assert iou.shape == (1, 5)
    np.testing.assert_allclose(iou[0], [1.0, 0.0, 50 / 150, 25 / 100, 0.0])
    # Vectorised: (N, M) and symmetric.
    np.testing.assert_allclose(box_iou(b, b), box_iou(b, b).T)
    np.testing.assert_allclose(np.diag(box_iou(b, b)), 1.0)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5)
    # Degenerate boxes give 0, not NaN.
    assert box_iou(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))[0, 0] == 0.0


def test_perfect_predictions_give_map_one() -> None:
    """Predictions equal to ground truth score mAP 1 and recall 1 for every class."""
    gts = [_gt([[10, 10, 50, 60], [100, 100, 150, 130]], [0, 2]),
           _gt([[5, 5, 20, 20]], [1]),
           _gt([[200, 10, 260, 90], [30, 40, 70, 80]], [3, 0])]
    preds = [_pred(g.boxes, np.full(len(g), 0.9), g.class_ids) for g in gts]
    res = evaluate_detections(preds, gts, num_classes=4)
    assert res.map50 == pytest.approx(1.0)
    assert res.ap_per_class == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})
    assert res.recall_per_class == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})
    assert res.num_gt_per_class == {0: 2, 1: 1, 2: 1, 3: 1}


def test_shifted_boxes_below_threshold_score_zero() -> None:
    """A box shifted to IoU 1/3 (< 0.5) is a miss and a false positive: AP 0."""
    gts = [_gt([[0, 0, 10, 10]], [0])]
    preds = [_pred([[5, 0, 15, 10]], [0.99], [0])]        # IoU = 50 / 150
    res = evaluate_detections(preds, gts, num_classes=1)
    assert res.map50 == 0.0 and res.recall_per_class[0] == 0.0
    # The same shift passes a lower threshold.
    res = evaluate_detections(preds, gts, num_classes=1, iou_threshold=0.3)
    assert res.map50 == pytest.approx(1.0)


def test_wrong_class_is_not_a_match() -> None:
    """A perfect box with the wrong class is a false positive of that class and a miss."""
    gts = [_gt([[0, 0, 10, 10]], [0])]
    preds = [_pred([[0, 0, 10, 10]], [0.9], [1])]
    res = evaluate_detections(preds, gts, num_classes=2)
    assert res.map50 == 0.0
    assert res.ap_per_class == {0: 0.0}                    # class 1 has no GT: excluded
    assert res.num_pred_per_class == {0: 0, 1: 1}


def test_higher_scored_false_positive_halves_ap() -> None:
    """FP at 0.9 then TP at 0.8: precision 0 then 1/2 at recall 1, so AP = 0.5."""
    gts = [_gt([[0, 0, 10, 10]], [0])]
    preds = [_pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])]
    res = evaluate_detections(preds, gts, num_classes=1)
    assert res.ap_per_class[0] == pytest.approx(0.5)
    assert res.recall_per_class[0] == 1.0
    assert res.precision_per_class[0] == 0.5


def test_ap_known_value_across_frames() -> None:
    """TP 0.9, FP 0.8, TP 0.7 over two frames: AP = 0.5 * 1 + 0.5 * 2/3."""
    gts = [_gt([[0, 0, 10, 10]], [0]), _gt([[20, 20, 40, 40]], [0])]
    preds = [_pred([[0, 0, 10, 10]], [0.9], [0]),
             _pred([[100, 100, 110, 110], [21, 21, 40, 40]], [0.8, 0.7], [0, 0])]
    res = evaluate_detections(preds, gts, num_classes=1)
    assert res.ap_per_class[0] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert res.map50 == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_duplicate_detection_counts_once() -> None:
    """Each GT is matched once; a duplicate is a false positive, recall stays 1."""
    gts = [_gt([[0, 0, 10, 10]], [0])]
    preds = [_pred([[0, 0, 10, 10], [0, 0, 10, 9]], [0.9, 0.8], [0, 0])]
    res = evaluate_detections(preds, gts, num_classes=1)
    assert res.ap_per_class[0] == pytest.approx(1.0)       # the duplicate ranks below the TP
    assert res.true_positives_per_class[0] == 1
    assert res.precision_per_class[0] == 0.5


def test_per_class_recall_and_mean_over_classes_with_gt() -> None:
    """Recall per class; classes without GT are left out of the mean."""
    gts = [_gt([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [0, 20, 10, 30]],
               [0, 0, 0, 1])]
    # Finds 2 of 3 class-0 objects and none of class 1; a class-3 FP (no class-3 GT).
    preds = [_pred([[0, 0, 10, 10], [40, 0, 50, 10], [60, 60, 70, 70]], [0.9, 0.8, 0.95],
                   [0, 0, 3])]
    res = evaluate_detections(preds, gts, num_classes=4)
    assert res.recall_per_class == pytest.approx({0: 2 / 3, 1: 0.0})
    assert res.ap_per_class == pytest.approx({0: 2 / 3, 1: 0.0})
    assert res.map50 == pytest.approx((2 / 3 + 0.0) / 2)
    assert res.mean_recall == pytest.approx(1 / 3)


def test_average_precision_envelope() -> None:
    """The precision envelope makes AP the all-point interpolated area."""
    # recall 0.5 @ p 0.5, recall 1.0 @ p 2/3: envelope is 2/3 everywhere.
    assert average_precision(np.array([0.5, 1.0]), np.array([0.5, 2 / 3])) == pytest.approx(2 / 3)
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


def test_input_checks() -> None:
    """Mismatched frame counts and out-of-range classes are errors, plain pairs are accepted."""
    with pytest.raises(ValueError):
        evaluate_detections([], [_gt([[0, 0, 1, 1]], [0])], num_classes=1)
    with pytest.raises(ValueError):
        evaluate_detections([_pred([[0, 0, 1, 1]], [1.0], [5])], [_gt([], [])], num_classes=2)
    pair = (np.array([[0, 0, 10, 10]]), np.array([0]))
    res = evaluate_detections([_pred([[0, 0, 10, 10]], [0.5], [0])], [pair], num_classes=1)
    assert res.map50 == pytest.approx(1.0)
    empty = evaluate_detections([_pred([], [], [])], [_gt([], [])], num_classes=3)
    assert empty.map50 == 0.0 and empty.ap_per_class == {}

"""Waiting for a condition with a timeout (never sleep-and-hope), and comparing detections."""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
from rclpy.executors import Executor


def wait_for(condition: Callable[[], bool], timeout: float = 10.0,
             interval: float = 0.02, executor: Optional[Executor] = None) -> bool:
    """
    Poll until ``condition()`` is true or the timeout passes; return the last result.

    With an ``executor``, its callbacks run while waiting (a test's own node spins there).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if executor is None:
            time.sleep(interval)
        else:
            executor.spin_once(timeout_sec=interval)
    return bool(condition())


def assert_detections_match(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                            expected: tuple, tolerance: float = 1.0) -> None:
    """Check detections equal the expected ones (any order), boxes within a tolerance."""
    assert len(scores) == len(expected), (boxes, scores, class_ids)
    order = np.argsort(-np.asarray(scores))
    for index, (box, score, class_id) in zip(order, sorted(expected, key=lambda e: -e[1])):
        assert int(class_ids[index]) == class_id
        assert abs(float(scores[index]) - score) < 1e-4
        np.testing.assert_allclose(np.asarray(boxes[index], float), box, atol=tolerance)

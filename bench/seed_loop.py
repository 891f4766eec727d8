"""
The seed-style loop: capture, resize, inference, decode, NMS and a command, serially, one thread.

This is how a perception loop is usually written first, and what the package is compared with:
plain OpenCV / numpy / ONNX Runtime calls, every step making its own copy (new frame, new
letterbox canvas, new tensor, a transposed output), no threads, no ROS. The frame is stamped
right after capture, and each step is timed, so the loop yields the same per-frame record as
the package's stage traces (stages preprocess, detector = inference + decode, nms, action).

Run alone: ``python -m bench.seed_loop --frames 60 --json out.json``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
import cv2  # noqa: E402
from edge_infer_ros.inference.backends.onnxruntime_backend import spinning_entries  # noqa: E402
from edge_infer_ros.stages.synthetic import CLASS_NAMES, SyntheticScene  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

SCORE_THRESHOLD = 0.25
IOU_THRESHOLD = 0.5
MAX_DETECTIONS = 100


def open_model(path: str, threads: int = 2, spin: bool = False) -> tuple[Any, str, int]:
    """
    Open an ONNX Runtime session; return it, its input name and its (square) input size.

    Configured like the package's detector (2 threads, worker threads spin-wait within a run
    and sleep between runs), so that the variants differ in plumbing only; ``spin`` restores
    ONNX Runtime's default (spinning between runs too: several times the CPU).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    for key, value in spinning_entries(spin, spin_within_run=True).items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    model_input = session.get_inputs()[0]
    return session, model_input.name, int(model_input.shape[2])


def warm_up(session: Any, input_name: str, size: int, runs: int = 5) -> None:
    """Run the model on a blank tensor, as the package's detector does at configure."""
    blank = np.zeros((1, 3, size, size), np.float32)
    for _ in range(runs):
        session.run(None, {input_name: blank})


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """Resize into a grey square canvas and make the NCHW float RGB tensor (new arrays)."""
    height, width = frame.shape[:2]
    scale = min(size / width, size / height)
    new_w, new_h = int(round(width * scale)), int(round(height * scale))
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), 114, np.uint8)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    tensor = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    return tensor, scale, left, top


def decode(output: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YOLOv8 output [1, 4+C, N] to (boxes xyxy, scores, class ids) above the threshold."""
    predictions = output[0].T  # (N, 4+C)
    class_scores = predictions[:, 4:]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores.max(axis=1)
    keep = scores >= SCORE_THRESHOLD
    cxcywh = predictions[keep, :4]
    boxes = np.empty_like(cxcywh)
    boxes[:, 0] = cxcywh[:, 0] - cxcywh[:, 2] / 2
    boxes[:, 1] = cxcywh[:, 1] - cxcywh[:, 3] / 2
    boxes[:, 2] = cxcywh[:, 0] + cxcywh[:, 2] / 2
    boxes[:, 3] = cxcywh[:, 1] + cxcywh[:, 3] / 2
    return boxes, scores[keep], class_ids[keep]


def nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, scale: float,
        left: int, top: int, width: int, height: int) -> list[tuple]:
    """Class-aware NMS with OpenCV, boxes mapped back to the image: [(box, score, class)]."""
    if len(scores) == 0:
        return []
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    keep = common.opencv_batched_nms(xywh, scores.tolist(), class_ids.tolist(),
                                     SCORE_THRESHOLD, IOU_THRESHOLD)
    detections = []
    for index in np.asarray(keep).reshape(-1)[:MAX_DETECTIONS]:
        x0, y0, x1, y1 = boxes[index]
        box = (min(max((x0 - left) / scale, 0), width), min(max((y0 - top) / scale, 0), height),
               min(max((x1 - left) / scale, 0), width), min(max((y1 - top) / scale, 0), height))
        detections.append((box, float(scores[index]), int(class_ids[index])))
    return detections


def decide(detections: list[tuple], width: int, height: int) -> tuple[float, float, bool]:
    """Steer toward the best ball, stop for a near person: (linear, angular, stop)."""
    best = None
    for box, score, class_id in detections:
        if score < 0.4:
            continue
        name = CLASS_NAMES[class_id] if class_id < len(CLASS_NAMES) else ''
        if name == 'person' and box[3] - box[1] >= 0.45 * height:
            return 0.0, 0.0, True
        if name == 'ball' and (best is None or score > best[1]):
            best = (box, score)
    if best is None:
        return 0.0, 0.0, False
    box = best[0]
    offset = ((box[0] + box[2]) / 2 - width / 2) / (width / 2)
    closeness = min(1.0, (box[3] - box[1]) / height / 0.45)
    linear = 0.5 * (1 - closeness) * (1 - min(1.0, abs(offset)))
    return linear, max(-1.0, min(1.0, -1.5 * offset)), False


def _serial_stages(frame: Any, session: Any, input_name: str, size: int, width: int,
                   height: int) -> list[list[Any]]:
    """Run one frame through every step on this thread; each step's [name, start, start, end]."""
    now = time.time_ns
    stages: list[list[Any]] = []
    start = now()
    tensor, scale, left, top = letterbox(frame, size)
    end = now()
    stages.append(['preprocess', start, start, end])
    start = end
    output = session.run(None, {input_name: tensor})[0]
    boxes, scores, class_ids = decode(output)
    end = now()
    stages.append(['detector', start, start, end])
    start = end
    detections = nms(boxes, scores, class_ids, scale, left, top, width, height)
    end = now()
    stages.append(['nms', start, start, end])
    start = end
    decide(detections, width, height)
    end = now()
    stages.append(['action', start, start, end])
    return stages


def run(model: str, frames: int, width: int, height: int, fps: float,
        seed: int = 0, spin: bool = False) -> dict[str, Any]:
    """Run the loop at ``fps`` for ``frames`` frames; return the records and counters."""
    session, input_name, size = open_model(model, spin=spin)
    scene = SyntheticScene(width=width, height=height, seed=seed)
    now = time.time_ns
    records = []
    period = 1.0 / fps
    next_time = time.perf_counter()
    for index in range(frames):
        frame, _ = scene.render(index)  # capture: a new frame
        stamp = now()
        stages = _serial_stages(frame, session, input_name, size, width, height)
        records.append({'seq': index, 'stamp_ns': stamp, 'stages': stages})
        next_time += period
        delay = next_time - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:
            next_time = time.perf_counter()
    return {'records': records, 'has_queue': False,
            'frames': {'captured': frames, 'processed': len(records), 'dropped': 0},
            'description': 'serial loop, one thread, a copy per step'}


def run_playback(model: str, frames: int, width: int, height: int, fps: float,
                 seed: int = 0, spin: bool = False) -> dict[str, Any]:
    """
    Run the loop against frames sent at a fixed rate, as a camera driver would send them.

    Frame i arrives at t0 + i / fps whether or not the loop is free; the loop takes the
    newest frame that has arrived and frames it passed over are dropped (a camera buffer of
    one frame). A frame is stamped with its arrival, so its latency includes the wait for the
    loop. For the max-rate search (bench/max_rate.py).
    """
    session, input_name, size = open_model(model, spin=spin)
    warm_up(session, input_name, size)
    scene = SyntheticScene(width=width, height=height, seed=seed)
    now = time.time_ns
    period_ns = int(round(1e9 / fps))
    records = []
    taken = -1
    start_ns = now() + 50_000_000
    while taken < frames - 1:
        newest = min(frames - 1, (now() - start_ns) // period_ns)
        if newest <= taken:
            time.sleep(max(0.0, (start_ns + (taken + 1) * period_ns - now()) / 1e9))
            continue
        taken = index = int(newest)
        stamp = start_ns + index * period_ns
        frame, _ = scene.render(index)  # capture: a new frame
        stages = _serial_stages(frame, session, input_name, size, width, height)
        records.append({'seq': index, 'stamp_ns': stamp, 'stages': stages})
    return {'records': records, 'has_queue': False,
            'frames': {'captured': frames, 'processed': len(records),
                       'dropped': frames - len(records)},
            'sent_ns': [start_ns + i * period_ns for i in range(frames)],
            'description': 'serial loop, frames sent at a fixed rate'}


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: run the loop and write its records as JSON."""
    return common.variant_main(
        argv, __doc__, False,
        lambda model, a: (run_playback if a.playback else run)(
            model, a.frames, a.width, a.height, a.fps, spin=a.ort_spin),
        lambda a, result: 'seed loop', _add_arguments)


def _add_arguments(parser: Any) -> None:
    parser.add_argument('--ort-spin', action='store_true',
                        help="ONNX Runtime's default spin-waiting worker threads")
    parser.add_argument('--playback', action='store_true',
                        help='frames sent at --fps whether the loop is free or not (dropped '
                             'when it is not), for the max-rate search')


if __name__ == '__main__':
    sys.exit(main())

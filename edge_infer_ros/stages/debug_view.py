"""The debug image: boxes, labels and the frame's per-stage latencies drawn on a copy."""

from __future__ import annotations

import cv2
from edge_infer_ros.core.frame import hops, StageTiming
from edge_infer_ros.core.image_encodings import to_bgr
from edge_infer_ros.core.payloads import DetectionPayload
import numpy as np

_COLOURS = ((0, 200, 255), (255, 120, 0), (0, 220, 0), (200, 0, 200), (255, 255, 0),
            (0, 0, 255))


def draw_debug_image(detections: DetectionPayload, trace: tuple[StageTiming, ...],
                     stamp_ns: int) -> np.ndarray:
    """Return a BGR copy of the frame with detections and stage latencies drawn on it."""
    image = detections.image
    if image is None:
        raise ValueError('draw_debug_image needs detections that carry their image')
    canvas = to_bgr(image, detections.image_encoding)  # a new BGR image in any encoding
    size = (detections.image_width, detections.image_height)
    if canvas.shape[1::-1] != size:  # a JPEG decoded at reduced scale: draw at the true size
        canvas = cv2.resize(canvas, size, interpolation=cv2.INTER_LINEAR)
    names = detections.class_names
    for box, score, class_id in zip(detections.boxes, detections.scores, detections.class_ids):
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        colour = _COLOURS[int(class_id) % len(_COLOURS)]
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 2)
        label = f'{names[class_id] if 0 <= class_id < len(names) else class_id} {score:.2f}'
        cv2.putText(canvas, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    colour, 1, cv2.LINE_AA)
    y = 16
    for timing, hop_ns in hops(stamp_ns, trace):
        text = (f'{timing.stage}: wait {hop_ns / 1e6:.2f} + '
                f'queue {timing.queue_wait_ns / 1e6:.2f} + work {timing.service_ns / 1e6:.2f} ms')
        cv2.putText(canvas, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1,
                    cv2.LINE_AA)
        y += 16
    if trace:
        total = (trace[-1].end_ns - stamp_ns) / 1e6
        cv2.putText(canvas, f'end to end {total:.2f} ms', (6, y), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (0, 255, 255), 1, cv2.LINE_AA)
    return canvas

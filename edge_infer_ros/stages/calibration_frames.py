"""
Frames and labels to calibrate and check a quantized model on: a folder, a video, a ROS 2 bag.

Apart from the quantizer (stages/quantize.py) because reading a user's recordings is its own
concern: every refusal says which file and why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Union

import cv2
import numpy as np

PathLike = Union[str, 'os.PathLike[str]']

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
VIDEO_SUFFIXES = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v', '.mpg', '.mpeg')


class QuantizeError(Exception):
    """A model or calibration source the quantizer refuses, with the reason."""


def iter_frames(source: PathLike, max_frames: int,
                bag_topic: str = '') -> Iterator[tuple[str, np.ndarray]]:
    """
    Yield (name, BGR uint8 image) from a folder of images, a video file or a ROS 2 bag.

    Unreadable images are skipped (a folder may hold other files); a source that is none of
    these is refused. A bag (a .mcap or .db3 file, or a bag folder) is read by the camera's bag
    source, so every encoding and compressed frame the pipeline takes calibrates too;
    ``bag_topic`` picks its image topic when it has several.
    """
    path = Path(os.fspath(source))
    if not path.exists():
        raise QuantizeError(f'calibration source {path} not found')
    if path.suffix.lower() in ('.db3', '.mcap') or (path.is_dir() and any(
            p.name == 'metadata.yaml' or p.suffix in ('.db3', '.mcap') for p in path.iterdir())):
        yield from _bag_frames(path, max_frames, bag_topic)
        return
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise QuantizeError(f'calibration folder {path} holds no images '
                                f'({", ".join(IMAGE_SUFFIXES)})')
        count = 0
        for f in files:
            if count >= max_frames:
                return
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                continue
            count += 1
            yield f.name, img
        return
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise QuantizeError(f'calibration source {path} is neither a folder of images, a '
                            f'video ({", ".join(VIDEO_SUFFIXES)}) nor a ROS 2 bag')
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise QuantizeError(f'calibration video {path} cannot be opened')
        count = 0
        while count < max_frames:
            ok, img = cap.read()
            if not ok or img is None:
                break
            yield f'{path.name}#{count}', img
            count += 1
    finally:
        cap.release()


def _bag_frames(path: Path, max_frames: int,
                bag_topic: str) -> Iterator[tuple[str, np.ndarray]]:
    """Yield a bag's image frames as BGR, named ``<bag>#<index>``; its refusals as ours."""
    from edge_infer_ros.core.image_encodings import EncodingError, to_bgr
    from edge_infer_ros.stages.bag import BagSource, decode_plain
    from edge_infer_ros.stages.camera import SourceError
    try:
        bag = BagSource(str(path), bag_topic, decode_plain)
    except SourceError as error:
        raise QuantizeError(f'calibration bag: {error}') from None
    try:
        for index in range(max_frames):
            try:
                raw = bag.read(index)
            except (SourceError, EncodingError) as error:  # one bad message: skipped
                print(f'quantize_model: calibration bag message {index} skipped: {error}')
                continue
            if raw is None:
                return
            yield f'{path.name}#{index}', to_bgr(raw, bag.encoding)
    finally:
        bag.close()


def read_labels(path: PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """
    Read ground truth: JSON ``{image name: [[x1, y1, x2, y2, class_id], ...]}``.

    Boxes are in image pixels. Returns name -> (boxes (N, 4), class_ids (N,)).
    """
    try:
        raw = json.loads(Path(os.fspath(path)).read_text(encoding='utf-8'))
    except (OSError, ValueError) as e:
        raise QuantizeError(f'labels file {path} cannot be read as JSON: {e}') from e
    if not isinstance(raw, dict):
        raise QuantizeError(f'labels file {path} must hold an object image name -> boxes')
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, rows in raw.items():
        arr = np.asarray(rows, np.float64).reshape(-1, 5) if rows else np.zeros((0, 5))
        out[str(name)] = (arr[:, :4], arr[:, 4].astype(np.int64))
    return out

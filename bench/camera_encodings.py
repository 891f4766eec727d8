"""
Camera encodings: what converting inside the preprocess stage costs, against a converter node.

(a) preprocess p50 per encoding at 640x480 and 1920x1080: the one ingest path as the
    preprocess input runs it (``raw_view`` of the message bytes, then the Preprocessor, whose
    converter turns YUV, Bayer and 16-bit frames into 8-bit in reused buffers) into the 320x320
    model tensor; frames of every encoding interleaved, so machine noise spreads evenly; the
    added cost is each encoding's p50 minus bgr8's, measured in the same run;
(b) the alternative: a converter node in another process (what an image_proc debayer or a
    colour-conversion node does) subscribes to the raw frame, converts it to bgr8 and
    republishes it; the row is its cost per frame, from its receipt of the raw frame to the
    pipeline's receipt of the bgr8 one (conversion, message and one DDS hop), both processes
    with the shipped Fast DDS profile (config/fastdds_shm.xml). Frames go one at a time.

``python -m bench.camera_encodings [--quick] [--frames N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Optional

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from edge_infer_ros.core.image_encodings import raw_view, to_bgr  # noqa: E402
from edge_infer_ros.stages.preprocess import Preprocessor  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(common.REPO / 'test'))
from support.camera_encoder import encode, reference_scene  # noqa: E402

SIZES = ((640, 480), (1920, 1080))
#: One encoding per layout and cost (the other Bayer patterns and YUV spellings cost the same).
ENCODINGS = ('bgr8', 'rgb8', 'bgra8', 'mono8', 'yuyv', 'uyvy', 'nv12', 'nv21', 'bayer_rggb8',
             'bayer_rggb16', 'mono16', 'rgb16', 'bgra16')
#: Encodings the converter-node alternative is measured for.
CONVERTED = ('yuyv', 'nv12', 'bayer_rggb8', 'mono16')
SHM_PROFILE = str(common.REPO / 'config' / 'fastdds_shm.xml')
TARGET_MS = {(640, 480): 0.3, (1920, 1080): 1.5}


def frames_of(width: int, height: int) -> dict[str, tuple[int, bytes, int]]:
    """Return (step, data, is_bigendian) of the reference scene in every benchmarked encoding."""
    scene = reference_scene(width, height)
    out = {}
    for encoding in ENCODINGS:
        step, data, _ = encode(scene, encoding)
        out[encoding] = (step, data, 0)
    return out


def preprocess_p50(width: int, height: int, frames: int) -> dict[str, float]:
    """Return the preprocess p50 (ms) per encoding, frames of all encodings interleaved."""
    sent = frames_of(width, height)
    preprocessor = Preprocessor(320, 320, 'rgb')
    samples: dict[str, list[float]] = {e: [] for e in ENCODINGS}
    for index in range(frames + 10):
        for encoding in ENCODINGS:
            step, data, bigendian = sent[encoding]
            began = time.perf_counter_ns()
            view = raw_view(height, width, encoding, step, data, bigendian)
            preprocessor(view, encoding)
            elapsed = time.perf_counter_ns() - began
            if index >= 10:  # warm-up: buffers allocated, caches filled
                samples[encoding].append(elapsed / 1e6)
    return {e: float(np.percentile(v, 50)) for e, v in samples.items()}


# -- (b) a converter node in another process --------------------------------------------------
def converter_main() -> int:
    """Child: the converter node (raw frame in, bgr8 out, its receipt time in frame_id)."""
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = Node('bench_encoding_converter')
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(Image, 'bench_encodings/bgr8', qos)

    def convert(msg: Image) -> None:
        received = time.perf_counter_ns()
        view = raw_view(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                        msg.is_bigendian)
        bgr = to_bgr(view, msg.encoding)
        out = Image(height=msg.height, width=msg.width, encoding='bgr8', step=msg.width * 3,
                    data=bgr.tobytes())
        out.header.stamp = msg.header.stamp
        out.header.frame_id = str(received)
        publisher.publish(out)

    node.create_subscription(Image, 'bench_encodings/raw', convert, qos)
    try:
        rclpy.spin(node)
    except Exception:  # noqa: B902 - ended by the parent
        pass
    return 0


def driver_main(frames: int) -> int:
    """Child with the profile loaded: send raw frames through the converter; print JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    converter = subprocess.Popen([sys.executable, '-m', 'bench.camera_encodings', '--converter'],
                                 cwd=str(common.REPO), env=os.environ.copy())
    rclpy.init()
    node = Node('bench_encoding_driver')
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(Image, 'bench_encodings/raw', qos)
    arrived: list[Image] = []
    node.create_subscription(Image, 'bench_encodings/bgr8',
                             lambda m: arrived.append((time.perf_counter_ns(), m)), qos)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    results: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        for width, height in SIZES:
            sent = frames_of(width, height)
            for encoding in CONVERTED:
                step, data, bigendian = sent[encoding]
                costs = []
                for index in range(frames + 5):
                    msg = Image(height=height, width=width, encoding=encoding, step=step,
                                is_bigendian=bigendian, data=data)
                    msg.header.stamp.nanosec = index
                    arrived.clear()
                    publisher.publish(msg)
                    deadline = time.monotonic() + 5
                    while not arrived and time.monotonic() < deadline:
                        executor.spin_once(timeout_sec=0.05)
                    if arrived and index >= 5:
                        at, out = arrived[0]
                        costs.append((at - int(out.header.frame_id)) / 1e6)
                results[f'{width}x{height}/{encoding}'] = (
                    float(np.percentile(costs, 50)) if costs else None)
    finally:
        converter.terminate()
        converter.wait(10)
    print(json.dumps(results))
    return 0


def converter_p50(frames: int) -> dict[str, Optional[float]]:
    """Run the driver (and through it the converter) with the shipped Fast DDS profile."""
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=SHM_PROFILE)
    out = subprocess.run([sys.executable, '-m', 'bench.camera_encodings', '--driver', str(frames)],
                         cwd=str(common.REPO), env=env, capture_output=True, text=True,
                         timeout=600, check=True).stdout
    result: dict[str, Optional[float]] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: Optional[list[str]] = None) -> int:
    """Measure (a) and (b) in one run; print a table; optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='60 frames per case')
    parser.add_argument('--frames', type=int, default=200)
    parser.add_argument('--json', default='')
    parser.add_argument('--converter', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--driver', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.converter:
        return converter_main()
    if args.driver:
        return driver_main(args.driver)
    frames = 60 if args.quick else args.frames
    preprocess = {f'{w}x{h}': preprocess_p50(w, h, frames) for w, h in SIZES}
    converter = converter_p50(max(20, frames // 4))
    print('| size | encoding | preprocess p50 ms | added to bgr8 ms | target ms | '
          'converter node p50 ms |')
    print('|---|---|---|---|---|---|')
    for width, height in SIZES:
        size = f'{width}x{height}'
        base = preprocess[size]['bgr8']
        for encoding in ENCODINGS:
            p50 = preprocess[size][encoding]
            alternative = converter.get(f'{size}/{encoding}')
            print(f'| {size} | {encoding} | {p50:.3f} | {p50 - base:+.3f} | '
                  f'{TARGET_MS[(width, height)]} | '
                  f'{"" if alternative is None else f"{alternative:.3f}"} |')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump({'preprocess_p50_ms': preprocess, 'converter_node_p50_ms': converter,
                       'machine': common.machine_state()}, stream, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())

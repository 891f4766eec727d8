"""
A stand-in for a robot's camera driver: a separate plain rclpy process publishing Image frames.

It knows nothing of this package: it publishes ``sensor_msgs/Image`` bgr8 on a topic at a fixed
rate, stamping each frame with its own clock (``header.stamp`` = ``time.time_ns()`` just before
``publish()``), best-effort (camera drivers' sensor-data QoS) or reliable. It waits for
``--subscribers`` subscriptions before the first frame, so no frame is lost to discovery.

``--bracket`` sends a 16x16 frame first and last: small enough for Fast DDS's default
shared-memory segment, so even without the profile the first and last sample normally arrive,
and a subscriber's gap count covers every large frame in between (sent = delivered + lost).

Pixel buffers are filled once (a few distinct frames, reused in turn): the driver's own copy
cost is not what is measured.

``python -m bench.foreign_camera --topic image_in --frames 300 --json sent.json``
"""

from __future__ import annotations

import argparse
import array
import json
import sys
import time
from typing import Any, Optional

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

#: Side of the bracket frames (16*16*3 bytes: far below any shared-memory segment).
BRACKET_SIZE = 16


def make_message(width: int, height: int, seed: int, frame_id: str) -> Image:
    """Return a bgr8 Image with random pixels (built once, published many times)."""
    msg = Image()
    msg.header.frame_id = frame_id
    msg.height, msg.width = height, width
    msg.encoding = 'bgr8'
    msg.is_bigendian = 0
    msg.step = width * 3
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    msg.data = array.array('B', pixels.tobytes())
    return msg


def publish_frames(node: Node, topic: str, width: int, height: int, fps: float, frames: int,
                   reliable: bool, subscribers: int, bracket: bool, depth: int = 5,
                   wait_s: float = 30.0, frame_id: str = 'camera_optical_frame'
                   ) -> dict[str, Any]:
    """Publish the frames at ``fps``; return what was sent (count, stamps, QoS)."""
    qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                     else ReliabilityPolicy.BEST_EFFORT)
    publisher = node.create_publisher(Image, topic, qos)
    deadline = time.monotonic() + wait_s
    while publisher.get_subscription_count() < subscribers:
        if time.monotonic() > deadline:
            raise RuntimeError(f'{subscribers} subscriber(s) on {topic} not seen in {wait_s} s')
        time.sleep(0.05)
    time.sleep(0.5)  # the subscriber's side of discovery (it matches us a little later)
    messages = [make_message(width, height, seed, frame_id) for seed in range(4)]
    small = make_message(BRACKET_SIZE, BRACKET_SIZE, 99, frame_id)
    plan = [messages[i % len(messages)] for i in range(frames)]
    if bracket:
        plan = [small] + plan + [small]
    stamps = []
    period = 1.0 / fps
    next_time = time.perf_counter()
    for msg in plan:
        stamp = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        publisher.publish(msg)
        stamps.append(stamp)
        next_time += period
        delay = next_time - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:
            next_time = time.perf_counter()
    time.sleep(0.5 if not reliable else 1.0)  # let the last samples go before the writer ends
    node.destroy_publisher(publisher)
    return {'topic': topic, 'sent': len(plan), 'large_frames': frames, 'bracket': bracket,
            'width': width, 'height': height, 'fps': fps,
            'reliability': 'reliable' if reliable else 'best_effort', 'stamps_ns': stamps}


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: publish frames, then write what was sent as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--topic', default='image_in')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--fps', type=float, default=30.0)
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--reliability', choices=('best_effort', 'reliable'),
                        default='best_effort')
    parser.add_argument('--subscribers', type=int, default=1,
                        help='wait for this many subscriptions before the first frame')
    parser.add_argument('--bracket', action='store_true',
                        help='send a tiny frame first and last (see the module doc)')
    parser.add_argument('--wait', type=float, default=30.0, help='seconds to wait for them')
    parser.add_argument('--json', default='', help='write what was sent here')
    args = parser.parse_args(argv)
    rclpy.init()
    node = Node('foreign_camera')
    try:
        sent = publish_frames(node, args.topic, args.width, args.height, args.fps,
                              args.frames, args.reliability == 'reliable', args.subscribers,
                              args.bracket, wait_s=args.wait)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(sent, stream)
    print(f'foreign_camera: sent {sent["sent"]} frames on {args.topic}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Bags written for the tests with rosbags' own writer (independent of the package's reader)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

SEC = 1_000_000_000
#: 2020-01-01T00:00:00Z: a recording far from the wall clock.
STAMP_2020_NS = 1_577_836_800 * SEC


def typestore():
    from rosbags.typesys import get_typestore, Stores
    return get_typestore(Stores.ROS2_HUMBLE)


def write_bag(path: Path, storage: str = 'mcap', frames: int = 30, rate_hz: float = 15.0,
              start_ns: int = STAMP_2020_NS, topic: str = '/camera/image_raw',
              msgtype: str = 'sensor_msgs/msg/Image', width: int = 64, height: int = 48,
              extra_topic: Optional[str] = None) -> Path:
    """Write a rosbag2 folder at ``path``: frames received (and stamped) at ``rate_hz``."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    store = typestore()
    types = store.types
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connection = writer.add_connection(topic, msgtype, typestore=store)
        extra = None
        if extra_topic:
            extra = writer.add_connection(extra_topic, 'std_msgs/msg/String', typestore=store)
        for index in range(frames):
            at_ns = start_ns + int(index * SEC / rate_hz)
            sec, nanosec = divmod(at_ns, SEC)
            header = types['std_msgs/msg/Header'](
                stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec),
                frame_id='bag_camera')
            if msgtype == 'sensor_msgs/msg/Image':
                pixels = np.full((height, width, 3), index % 256, np.uint8)
                msg = types[msgtype](header=header, height=height, width=width,
                                     encoding='bgr8', is_bigendian=0, step=width * 3,
                                     data=pixels.reshape(-1))
            elif msgtype == 'sensor_msgs/msg/CompressedImage':
                import cv2
                ok, encoded = cv2.imencode('.jpg', np.full((height, width, 3), 90, np.uint8))
                msg = types[msgtype](header=header, format='jpeg', data=encoded.reshape(-1))
            else:
                msg = types[msgtype](data=f'not an image {index}')
            writer.write(connection, at_ns, store.serialize_cdr(msg, msgtype))
            if extra is not None:
                text = types['std_msgs/msg/String'](data='x')
                writer.write(extra, at_ns, store.serialize_cdr(text, 'std_msgs/msg/String'))
    return path


def storage_file(bag: Path) -> Path:
    """Return the one storage file (.mcap or .db3) inside a bag folder."""
    [found] = [p for p in bag.iterdir() if p.suffix in ('.mcap', '.db3')]
    return found

"""
The ``bag`` source of the camera node: image frames replayed from a ROS 2 bag (.mcap, .db3).

Why plain: robot teams record bags, and rosbag2 cannot be installed everywhere the package runs
(no wheels); the ``rosbags`` library (pure Python, optional) reads both storage formats without
ROS. Reading, checking and pacing a recording has nothing to do with rclpy: the node passes in
the function that turns a message into a frame (the one its ``topic`` source uses), so a bag
frame is decoded exactly as a live one.

Every way a bag can be bad (missing, not a bag, truncated, corrupt, empty, no such topic, not
an image type) is refused with a :class:`SourceError` that says which and why; a message that
cannot be read in the middle of a replay ends it with the reason (``ended``), never a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from edge_infer_ros.stages.camera import FrameSource, SourceError
import numpy as np

#: The image types a bag topic may hold.
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
#: How to install the optional reader (the rosdep key is in rosdep/edge_infer_ros.yaml).
INSTALL_HINT = ('the bag source needs the rosbags package: pip install rosbags==0.11.9 '
                '(or rosdep install --from-paths src: key python3-rosbags-pip)')

#: Turns a deserialised message and its type name into (image, encoding).
Decode = Callable[[Any, str], tuple[np.ndarray, str]]


def decode_plain(msg: Any, msgtype: str) -> tuple[np.ndarray, str]:
    """
    Turn a bag's image message into (image, encoding) without ROS, for offline tools.

    The camera node decodes with its own message checks (stamps against its clock); a tool
    that only needs the pixels (calibration) uses the same ingest path without them.
    """
    from edge_infer_ros.core import compressed
    from edge_infer_ros.core.image_encodings import raw_view
    if msgtype.endswith('CompressedImage'):
        image = compressed.decode(bytes(msg.data), msg.format)[0]
        return image, 'bgr8'
    return (raw_view(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                     msg.is_bigendian), msg.encoding)


class BagSource(FrameSource):
    """
    The messages of one image topic of a bag, in receive-time order, at the recorded pace.

    ``period_after_s`` gives the recorded gap to the next frame (receive times), so the camera
    replays at the pace the frames arrived when recorded. ``recorded_stamp_ns`` and
    ``recorded_time_ns`` are the header stamp and receive time of the frame read last.
    """

    def __init__(self, uri: str, topic: str, decode: Decode, loop: bool = False) -> None:
        try:
            from rosbags.highlevel import AnyReader
            from rosbags.typesys import get_typestore, Stores
        except ImportError as error:
            raise SourceError(f'{INSTALL_HINT} ({error})') from None
        path = Path(uri)
        if not uri or not path.exists():
            raise SourceError(f'bag {uri!r} not found (uri: a .mcap or .db3 file or a bag '
                              'folder)')
        if path.is_file() and path.suffix not in ('.mcap', '.db3'):
            raise SourceError(f'bag {uri}: not a .mcap or .db3 file or a bag folder')
        self._decode = decode
        self._loop = loop
        self.uri = uri
        try:
            self._reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
            self._reader.open()
        except Exception as error:  # noqa: B902 - any failure of a foreign file is a refusal
            raise SourceError(f'bag {uri} cannot be read (corrupt or truncated?): '
                              f'{type(error).__name__}: {error}') from None
        try:
            self._connections = self._choose(topic)
        except SourceError:
            self._reader.close()
            raise
        self.topic = self._connections[0].topic
        self.msgtype = self._connections[0].msgtype
        self.messages = sum(c.msgcount for c in self._connections)
        if self.messages == 0:
            self._reader.close()
            raise SourceError(f'bag {uri}: topic {self.topic} holds no messages')
        self._messages: Optional[Iterator[tuple[Any, int, bytes]]] = None
        self._next: Optional[tuple[Any, int, bytes]] = None
        self._first_ns = 0
        self._last_ns = 0
        self.recorded_stamp_ns = 0
        self.recorded_time_ns = 0
        #: Times the bag started again (loop), and why the replay ended ('' while it goes on).
        self.loops = 0
        self.ended = ''
        self._restart()

    def _choose(self, topic: str) -> list[Any]:
        """Return the connections of the image topic asked for (or the only one)."""
        connections = list(self._reader.connections)
        images = sorted({c.topic for c in connections if c.msgtype in IMAGE_TYPES})
        if not topic:
            if len(images) != 1:
                raise SourceError(f'bag {self.uri}: set bag_topic, the image topic to replay '
                                  f'(image topics: {", ".join(images) or "none"})')
            topic = images[0]
        chosen = [c for c in connections if c.topic == topic]
        if not chosen:
            raise SourceError(f'bag {self.uri} has no topic {topic} (image topics: '
                              f'{", ".join(images) or "none"})')
        wrong = {c.msgtype for c in chosen} - set(IMAGE_TYPES)
        if wrong:
            raise SourceError(f'bag {self.uri}: topic {topic} holds {", ".join(sorted(wrong))}, '
                              f'not an image ({" or ".join(IMAGE_TYPES)})')
        return chosen

    def _restart(self) -> None:
        self._messages = self._reader.messages(connections=self._connections)
        self._next = self._pull()

    def _pull(self) -> Optional[tuple[Any, int, bytes]]:
        """Return the next raw message, or None at the end or when the bag breaks off."""
        if self._messages is None:
            return None
        try:
            return next(self._messages)
        except StopIteration:
            return None
        except Exception as error:  # noqa: B902 - a truncated or corrupt chunk ends the replay
            self._messages = None
            self.ended = f'bag {self.uri} breaks off: {type(error).__name__}: {error}'
            return None

    def read(self, index: int) -> Optional[np.ndarray]:
        """Return the next frame (decoded as a live one), or None when the replay is over."""
        current = self._next
        if current is None and self._loop and not self.ended and self.loops < 2**31:
            self.loops += 1
            self._restart()
            current = self._next
        if current is None:
            if not self.ended:
                self.ended = f'end of bag {self.uri} ({self.topic}) after ' \
                             f'{self.loops + 1} pass(es)'
            return None
        connection, time_ns, raw = current
        self._next = self._pull()
        self.recorded_time_ns = time_ns
        try:
            msg = self._reader.deserialize(raw, connection.msgtype)
        except Exception as error:  # noqa: B902 - one corrupt message: counted by the node
            raise SourceError(f'bag message at {time_ns} ns cannot be decoded: '
                              f'{type(error).__name__}: {error}') from None
        stamp = getattr(getattr(msg, 'header', None), 'stamp', None)
        self.recorded_stamp_ns = 0 if stamp is None else stamp.sec * 1_000_000_000 + stamp.nanosec
        image, self.encoding = self._decode(msg, connection.msgtype)
        return image

    def period_after_s(self, index: int) -> Optional[float]:
        """Return the recorded gap (s) from the frame read last to the next one."""
        if self._next is None:
            return None
        gap = self._next[1] - self.recorded_time_ns
        return max(0.0, gap / 1e9)

    def close(self) -> None:
        """Close the bag."""
        self._messages = None
        self._reader.close()

"""
Capture stamps that go back: counted per camera, reported as a fault for a while.

A camera's stamps should only grow. One that goes back means a driver restart or a clock
jump, and the latencies measured from that camera's stamps are suspect. The frame itself is
still a valid image, so the stage processes it; this rule only counts it and keeps a fault
text up for ``hold_s`` after the last backwards stamp (one is no lasting fault).

A stamp equal to the camera's last one is that frame again (a driver or a relay that
published it twice): :meth:`StampOrder.repeated` tells the stage to skip it, and counts it.

Camera names come from the frames' headers, i.e. from outside: at most ``max_cameras`` are
remembered, the one heard from least recently makes room (as in :mod:`.sequence`).
"""

from __future__ import annotations

from collections import OrderedDict
import threading
from typing import Optional

#: Cameras whose last stamp is remembered; one more evicts the least recently heard.
MAX_CAMERAS = 64


class StampOrder:
    """Per-camera last capture stamps; count and report the ones that go back."""

    def __init__(self, hold_s: float = 5.0, max_cameras: int = MAX_CAMERAS) -> None:
        if max_cameras < 1 or hold_s <= 0:
            raise ValueError('max_cameras must be >= 1 and hold_s > 0')
        self.hold_s = hold_s
        self.max_cameras = max_cameras
        #: Stamps that went back, over every camera (evicted ones included).
        self.count = 0
        self._last: OrderedDict[str, int] = OrderedDict()
        self._fault = ''
        self._fault_ns = 0
        #: Frames skipped as the camera's last frame again (same stamp), evicted ones included.
        self.duplicates = 0
        self._lock = threading.Lock()  # cameras may be observed from their own threads

    def observe(self, camera: str, stamp_ns: int, seq: int, now_ns: int) -> Optional[str]:
        """Record a frame's stamp; return the fault text if it went back, else None."""
        with self._lock:
            last = self._last.pop(camera, None)
            self._last[camera] = stamp_ns
            if last is None and len(self._last) > self.max_cameras:
                self._last.popitem(last=False)
            if last is None or stamp_ns >= last:
                return None
            self.count += 1
            self._fault_ns = now_ns
            self._fault = (f'camera {camera}: stamp went back {(last - stamp_ns) / 1e6:.3f} ms '
                           f'(frame {seq}); check the driver and the clock')
            return self._fault

    def repeated(self, camera: str, stamp_ns: int) -> bool:
        """Tell whether a frame is the camera's last one again (same stamp); count it if so."""
        with self._lock:
            if self._last.get(camera) != stamp_ns:
                return False
            self.duplicates += 1
            return True

    def last_stamp(self, camera: str) -> Optional[int]:
        """Return the camera's last stamp observed (None: not remembered)."""
        with self._lock:
            return self._last.get(camera)

    def fault(self, now_ns: int) -> str:
        """Return the latest fault text while within ``hold_s`` of it, else ''."""
        with self._lock:
            if self._fault and now_ns - self._fault_ns > self.hold_s * 1e9:
                self._fault = ''  # the count stays
            return self._fault

    def reset(self) -> None:
        """Forget every camera's last stamp and the fault (the clock jumped); the count stays."""
        with self._lock:
            self._last.clear()
            self._fault = ''

    def cameras(self) -> int:
        """Return how many cameras' last stamps are remembered now."""
        return len(self._last)

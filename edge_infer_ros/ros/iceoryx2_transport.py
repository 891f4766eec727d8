"""The iceoryx2 same-host transport: zero-copy shared memory (:mod:`edge_infer_ros.core.shm`)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from edge_infer_ros.core import shm
from edge_infer_ros.core.frame import Envelope


class Iceoryx2:
    """Frames as iceoryx2 samples, read-only numpy views on the receiving side."""

    def unavailable_reason(self) -> Optional[str]:
        """Return why iceoryx2 cannot be used here (not installed), or None."""
        return shm.unavailable_reason()

    def sender(self, topic: str) -> shm.ShmPublisher:
        """Open an iceoryx2 publisher of a resolved topic (ShmError: why not)."""
        return shm.ShmPublisher(topic)

    def receiver(self, topic: str, on_frame: Callable[[Envelope[Any], int], None],
                 on_error: Callable[[str], None],
                 on_malformed: Callable[[str], None]) -> shm.ShmSubscriber:
        """Open an iceoryx2 subscriber of a resolved topic (ShmError: why not)."""
        return shm.ShmSubscriber(topic, on_frame, on_error=on_error, on_malformed=on_malformed)

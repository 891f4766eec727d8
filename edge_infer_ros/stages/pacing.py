"""
When a camera captures its next frame: at its rate, or just in time for the pipeline.

Why plain: the rule decides latency and drops at saturation (a frame captured too early waits
in a queue or is dropped from it; one captured too late leaves the detector idle), and it is
arithmetic on clock readings, tested here without threads or ROS.
"""

from __future__ import annotations

#: Weight of the newest frame in the running mean of the capture's own work, and the largest
#: multiple of the mean one frame may count as (a frame stalled by the scheduler must not
#: make the camera capture early for many frames after it).
WORK_EWMA_WEIGHT = 0.1
WORK_CLIP = 2.0


class CapturePacer:
    """
    The next capture time of one camera, from its period and (paced) the pipeline's readiness.

    ``perf_counter`` seconds throughout, except ``ready_ns`` (``perf_counter_ns``).
    """

    def __init__(self, start_s: float) -> None:
        self.next_s = start_s
        #: running mean of capture + the stages run before the frame is queued, s
        self.work_s = 0.0
        #: how long the camera slept before the frame it captures next (tells ``auto`` inputs
        #: downstream whether running inline pays), ns
        self.idle_ns = 0

    def delay(self, began_s: float, published_s: float, now_s: float, period_s: float,
              ready_ns: int = 0, pace: bool = False) -> float:
        """
        Return how long to wait (s; 0 or less: capture now) after publishing a frame.

        ``began_s``/``published_s``: when this frame's capture began and its publish
        returned; ``ready_ns``: when the busiest stage that queued it expects to be free (0:
        it ran at once). Paced, the next frame is captured so that it is ready just when that
        stage is free: no frame waits in (or is dropped from) its queue and capture still
        overlaps the stage's work. A camera that fell more than a period behind starts
        again from now instead of bursting to catch up.
        """
        self.next_s += period_s
        if ready_ns and pace:
            took = published_s - began_s
            mean = self.work_s
            self.work_s = took if not mean else \
                mean + WORK_EWMA_WEIGHT * (min(took, WORK_CLIP * mean) - mean)
            self.next_s = max(self.next_s, ready_ns / 1e9 - self.work_s)
        wait = self.next_s - now_s
        self.idle_ns = int(wait * 1e9) if wait > 0 else 0
        if wait < -period_s:
            self.next_s = now_s
        return wait

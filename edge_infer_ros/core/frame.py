"""
Per-frame timing records that travel with every frame through the pipeline.

Why a plain module: the timing model is shared by the stage nodes, the budget
monitor, the main job's report and the benchmarks, and none of that needs ROS.

Clock: every time is nanoseconds of ROS time on the node's clock, which for a
node without ``use_sim_time`` is the system clock (``time.time_ns``).  Hosts of
one robot are assumed time-synchronised (chrony/PTP), as every multi-host ROS
system already must be, so times taken on different hosts can be subtracted.
"""

from __future__ import annotations

from dataclasses import dataclass
import time
from typing import Any, Callable

#: The clock every stage stamps with. A module attribute so tests can swap it.
now_ns: Callable[[], int] = time.time_ns


@dataclass(frozen=True, slots=True)
class StageTiming:
    """When one stage received, started and finished one frame (ns, ROS time)."""

    stage: str
    node: str
    received_ns: int
    start_ns: int
    end_ns: int

    @property
    def queue_wait_ns(self) -> int:
        """Time the frame waited in the stage's input queue."""
        return self.start_ns - self.received_ns

    @property
    def service_ns(self) -> int:
        """Time the stage spent working on the frame."""
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class Envelope:
    """
    One frame's payload plus its identity and the trace so far.

    Envelopes are immutable and passed by reference between stages in one
    process; a stage makes a new envelope (new payload, trace extended by one
    entry) instead of changing the one it received, so several subscribers can
    share it safely.
    """

    camera: str
    seq: int
    stamp_ns: int
    frame_id: str
    trace: tuple[StageTiming, ...]
    payload: Any

    def forward(self, payload: Any, timing: StageTiming) -> 'Envelope':
        """Return the envelope the next stage receives."""
        return Envelope(self.camera, self.seq, self.stamp_ns, self.frame_id,
                        self.trace + (timing,), payload)


@dataclass(frozen=True, slots=True)
class FrameTrace:
    """The whole trace of one frame, as published by the last stage."""

    camera: str
    seq: int
    stamp_ns: int
    frame_id: str
    stages: tuple[StageTiming, ...]

    @classmethod
    def of(cls, envelope: Envelope) -> 'FrameTrace':
        """Take the trace out of an envelope (no payload)."""
        return cls(envelope.camera, envelope.seq, envelope.stamp_ns,
                   envelope.frame_id, envelope.trace)

    @property
    def end_to_end_ns(self) -> int:
        """Capture stamp to the end of the last stage."""
        return self.stages[-1].end_ns - self.stamp_ns if self.stages else 0

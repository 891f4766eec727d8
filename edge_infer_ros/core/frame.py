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
from typing import Any, Callable, Generic, Iterable, Iterator, Optional, TypeVar

from edge_infer_ros.core.records import fast_init

#: The clock every stage stamps with. A module attribute so tests can swap it.
now_ns: Callable[[], int] = time.time_ns


@fast_init
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


def hops(stamp_ns: int, stages: Iterable[StageTiming]) -> Iterator[tuple[StageTiming, int]]:
    """
    Yield each stage with the hop that brought the frame to it (ns).

    The first hop is *ingest* (capture stamp to the first stage's receipt: driver, encoding,
    transport); the others are transports between one stage's end and the next one's
    receipt. One walk, shared by the monitor, the debug view and the profile.
    """
    previous_end = stamp_ns
    for timing in stages:
        yield timing, timing.received_ns - previous_end
        previous_end = timing.end_ns


#: What an envelope carries: an image, a tensor, candidates, detections, a command, a trace.
PayloadT = TypeVar('PayloadT')
#: The payload of the envelope a method returns, when it differs from its own.
OtherT = TypeVar('OtherT')


@fast_init
@dataclass(frozen=True, slots=True)
class Envelope(Generic[PayloadT]):
    """
    One frame's payload plus its identity and the trace so far.

    Envelopes are immutable and passed by reference between stages in one
    process; a stage makes a new envelope (new payload, trace extended by one
    entry) instead of changing the one it received, so several subscribers can
    share it safely. Generic over the payload so that code can name what it carries
    (``Envelope[TensorPayload]``); the stage callbacks take a bare ``Envelope``, so mypy does
    not check payload types from one stage to the next.
    """

    camera: str
    seq: int
    stamp_ns: int
    frame_id: str
    trace: tuple[StageTiming, ...]
    payload: PayloadT

    def forward(self, payload: OtherT, timing: StageTiming) -> Envelope[OtherT]:
        """Return the envelope the next stage receives: new payload, trace + this stage."""
        return Envelope(self.camera, self.seq, self.stamp_ns, self.frame_id,
                        self.trace + (timing,), payload)

    def with_payload(self, payload: OtherT, camera: Optional[str] = None) -> Envelope[OtherT]:
        """
        Return the same frame (identity, stamp) with another payload and no trace.

        For what leaves the staged path: a command, a trace, a debug image, a relayed frame
        under this pipeline's camera name.
        """
        return Envelope(self.camera if camera is None else camera, self.seq, self.stamp_ns,
                        self.frame_id, (), payload)


@fast_init
@dataclass(frozen=True, slots=True)
class FrameTrace:
    """The whole trace of one frame, as published by the last stage."""

    camera: str
    seq: int
    stamp_ns: int
    frame_id: str
    stages: tuple[StageTiming, ...]

    @classmethod
    def of(cls, envelope: Envelope[Any]) -> 'FrameTrace':
        """Take the trace out of an envelope (no payload)."""
        return cls(envelope.camera, envelope.seq, envelope.stamp_ns,
                   envelope.frame_id, envelope.trace)

    @property
    def end_to_end_ns(self) -> int:
        """Capture stamp to the end of the last stage."""
        return self.stages[-1].end_ns - self.stamp_ns if self.stages else 0

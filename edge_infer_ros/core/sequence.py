"""
Frames lost between processes, counted from the publishers' own sequence numbers.

DDS numbers every sample a writer sends (``publication_sequence_number`` of rclpy's
``MessageInfo``), one series per publisher. A best-effort reader that misses samples sees a
gap in that series, and nothing else tells: the lost frames never reach a stage, so no stage
counter can count them. This tracker turns the gaps into a count, per publisher, for frames of
any publisher (the package's own stages or a robot's camera driver alike).

What it handles, because every input is untrusted:

* the first sample of a publisher sets its baseline (a publisher that ran before we subscribed
  lost nothing to us);
* a late sample (reordered by the network) that fills a gap counted a moment ago is taken back
  off the lost count, so loss is never counted twice;
* a number going back further than that, or a repeat, is a restart or a duplicate: the series
  starts again from it (counted, never a negative loss);
* a jump larger than ``max_gap`` is a restart too (a driver that came back under the same
  identity), not millions of lost frames;
* at most ``max_publishers`` series are kept; the one heard from least recently makes room.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Hashable, Optional

#: Samples back from the newest whose late arrival still takes a counted loss back.
REORDER_WINDOW = 64


@dataclass
class PublisherSeries:
    """What is known of one publisher's sequence numbers."""

    first_seq: int
    last_seq: int
    received: int = 1
    lost: int = 0
    late: int = 0
    duplicates: int = 0
    restarts: int = 0
    #: Sequence numbers counted lost recently, which a late arrival may still fill.
    missing: set[int] = field(default_factory=set)


@dataclass
class SequenceTotals:
    """Counters over every publisher seen (evicted ones included)."""

    received: int = 0
    lost: int = 0
    late: int = 0
    duplicates: int = 0
    restarts: int = 0
    publishers_seen: int = 0
    publishers_evicted: int = 0
    without_info: int = 0


class SequenceTracker:
    """Count gaps in per-publisher sequence numbers: frames the middleware lost."""

    def __init__(self, max_publishers: int = 32, max_gap: int = 1_000_000,
                 reorder_window: int = REORDER_WINDOW) -> None:
        if max_publishers < 1 or max_gap < 1 or reorder_window < 0:
            raise ValueError('max_publishers and max_gap must be >= 1, reorder_window >= 0')
        self.max_publishers = max_publishers
        self.max_gap = max_gap
        self.reorder_window = reorder_window
        self.totals = SequenceTotals()
        self._series: OrderedDict[Hashable, PublisherSeries] = OrderedDict()
        self._ignored: OrderedDict[Hashable, None] = OrderedDict()

    @property
    def lost(self) -> int:
        """Frames counted lost over every publisher not marked local."""
        return self.totals.lost

    def series(self, publisher: Hashable) -> Optional[PublisherSeries]:
        """Return what is known of one publisher (None if not tracked)."""
        return self._series.get(publisher)

    def all_series(self) -> list[PublisherSeries]:
        """Return what is known of every publisher tracked now (oldest heard first)."""
        return list(self._series.values())

    def publishers(self) -> int:
        """Return how many publishers are tracked now."""
        return len(self._series)

    def observe_without_info(self) -> None:
        """Count a sample that came without a sequence number (the rmw gave none)."""
        self.totals.without_info += 1

    def ignore(self, publisher: Hashable) -> None:
        """
        Stop counting a publisher whose frames reach us another way (our own process).

        Its series and the losses counted for it are dropped: a DDS echo that is lost costs
        no frame when the frame was handed over by reference.
        """
        series = self._series.pop(publisher, None)
        if series is not None:
            self.totals.lost -= series.lost
            self.totals.received -= series.received
        self._ignored[publisher] = None
        self._ignored.move_to_end(publisher)
        while len(self._ignored) > self.max_publishers:
            self._ignored.popitem(last=False)

    def observe(self, publisher: Hashable, seq: int) -> int:
        """Record one received sample; return how many frames this sample shows lost (>= 0)."""
        if publisher in self._ignored:
            return 0
        totals = self.totals
        totals.received += 1
        series = self._series.get(publisher)
        if series is None:
            if len(self._series) >= self.max_publishers:
                self._series.popitem(last=False)
                totals.publishers_evicted += 1
            self._series[publisher] = PublisherSeries(seq, seq)
            totals.publishers_seen += 1
            return 0
        self._series.move_to_end(publisher)
        series.received += 1
        expected = series.last_seq + 1
        if seq == expected:
            series.last_seq = seq
            return 0
        if expected < seq <= series.last_seq + self.max_gap:
            gap = seq - expected
            series.lost += gap
            totals.lost += gap
            if self.reorder_window:
                low = max(expected, seq - self.reorder_window)
                series.missing.update(range(low, seq))
                floor = seq - self.reorder_window
                series.missing = {s for s in series.missing if s >= floor}
            series.last_seq = seq
            return gap
        if seq in series.missing:
            series.missing.discard(seq)
            series.lost -= 1
            series.late += 1
            totals.lost -= 1
            totals.late += 1
            return 0
        if seq == series.last_seq or (seq < series.last_seq and
                                      series.last_seq - seq <= self.reorder_window):
            series.duplicates += 1
            totals.duplicates += 1
            return 0
        # Far back or far ahead: the publisher started again; a new series from here.
        series.restarts += 1
        totals.restarts += 1
        series.first_seq = series.last_seq = seq
        series.missing.clear()
        return 0


#: Share of a topic's frames lost in transport (over RecentLoss's window) above which a stage
#: reports WARN: a healthy same-host link with the shipped profile loses none.
LOSS_WARN_RATE = 0.005
#: What to do about it, named in the WARN.
LOSS_FIX = ('give the publishing process (the camera driver too) the Fast DDS profile '
            'config/fastdds_shm.xml (FASTDDS_DEFAULT_PROFILES_FILE=<share>/edge_infer_ros/'
            'config/fastdds_shm.xml, or include launch/dds_profile.launch.py), or make both ends '
            'reliable (qos.input.reliability:=reliable)')

#: What to do when the reader lost them itself: they arrived, and its history overflowed
#: before the stage took them.
OVERFLOW_FIX = ("raise qos.input.depth, or relieve this process's executor (a slow callback "
                'or timer delays taking samples)')


class RecentLoss:
    """
    Loss rate over the last ``window_s`` seconds, from snapshots of a tracker's totals.

    A loss an hour ago should not keep a stage at WARN forever; a lifetime rate would.
    Snapshots are taken at the diagnostics rate and kept for the window only (bounded).
    """

    def __init__(self, window_s: float = 10.0, max_snapshots: int = 1024) -> None:
        self.window_s = window_s
        self._snapshots: list[tuple[float, int, int]] = []
        self._max = max_snapshots

    def update(self, now_s: float, received: int, lost: int) -> tuple[int, int]:
        """Record the totals now; return (lost, lost + received) within the window."""
        self._snapshots.append((now_s, received, lost))
        while len(self._snapshots) > self._max or (
                len(self._snapshots) > 1 and now_s - self._snapshots[1][0] >= self.window_s):
            self._snapshots.pop(0)
        _, old_received, old_lost = self._snapshots[0]
        if len(self._snapshots) == 1:
            old_received = old_lost = 0
        delta_lost = max(0, lost - old_lost)
        return delta_lost, delta_lost + max(0, received - old_received)


def loss_warning(topic: str, lost: int, total: int, window_s: float,
                 warn_rate: float = LOSS_WARN_RATE,
                 middleware_lost: Optional[int] = None) -> Optional[str]:
    """
    Return the WARN text when ``lost`` of ``total`` frames exceeds the rate, else None.

    ``lost`` comes from gaps in the sequence numbers, which a reader's own history overflow
    makes too; ``middleware_lost`` (the middleware's count of samples lost on the way, None
    where unknown) tells the two apart, so the WARN names the end that lost them.
    """
    if lost <= 0 or total <= 0 or lost / total <= warn_rate:
        return None
    if middleware_lost is None or middleware_lost >= lost:
        return (f'{lost} of {total} frames on {topic} lost in transport ({lost / total:.1%}) in '
                f"the last {window_s:g} s (gaps in the publishers' sequence numbers); fix: "
                f'{LOSS_FIX}')
    text = (f'{lost} of {total} frames on {topic} missing ({lost / total:.1%}) in the last '
            f"{window_s:g} s (gaps in the publishers' sequence numbers): "
            f"{lost - middleware_lost} arrived and were overwritten in this reader's history "
            f'before the stage took them; fix: {OVERFLOW_FIX}')
    if middleware_lost > 0:
        text += f'; {middleware_lost} lost in transport; fix: {LOSS_FIX}'
    return text

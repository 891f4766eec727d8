"""
The node's clock: ROS time for stamps and ages, a monotonic clock for durations.

Why: under ``use_sim_time`` (a simulator, a bag played with ``--clock``) the node's ROS clock
follows ``/clock``, far from the wall clock and advancing in steps; a stage's service time
measured on it would be 0 or one ``/clock`` period. So the rule (docs/architecture.md):

* every age, staleness, watchdog, deadline, window and STALE decision compares a header stamp
  with the node's ROS clock (:meth:`NodeClock.now_ns`);
* service and queue times are measured on the monotonic clock (:meth:`NodeClock.mono_ns`) and
  placed on the ROS time line only when the stage's timing record is made
  (:meth:`NodeClock.timing`), so the trace keeps one time line across processes and its
  durations are exact.

Several nodes share one process in the composed container, each with its own clock: a clock is
an object given to each node and stage, never a module global. Without ROS (plain tests) the
ROS clock defaults to ``time.time_ns``.

A clock that jumps (a bag that loops, a simulator reset, time going back) is told by comparing
successive readings with the monotonic clock; each jump is counted and bumps ``jumps``, which
whatever keeps times on this clock (windows, watchdogs, stamp order) compares with the count it
last saw to start again.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from edge_infer_ros.core.frame import StageTiming

#: A backward step larger than this is a jump (wall clocks may step back a little under NTP).
BACKWARD_JUMP_NS = 1_000_000
#: A forward step this much larger than the monotonic time that passed is a jump.
FORWARD_JUMP_NS = 2_000_000_000
#: ... unless the ROS clock ran at most this many times faster than the monotonic one (a
#: simulator faster than real time).
MAX_RATE = 20.0


class NodeClock:
    """
    One node's clock: ``now_ns`` (ROS time, for stamps and ages), ``mono_ns`` (durations).

    ``ros_ns`` is the node's ROS clock (``lambda: node.get_clock().now().nanoseconds``);
    thread-safe: the readings and the jump count are taken under one lock.
    """

    def __init__(self, ros_ns: Callable[[], int] = time.time_ns,
                 mono_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._ros_ns = ros_ns
        self.mono_ns = mono_ns
        self._lock = threading.Lock()
        self._last: Optional[tuple[int, int]] = None
        #: Jumps seen so far; whatever depends on this clock restarts when it changes.
        self.jumps = 0
        #: What the latest jump was ('' before any).
        self.last_jump = ''

    def now_ns(self) -> int:
        """Return the ROS time now (ns), noting a jump since the previous reading."""
        with self._lock:
            mono = self.mono_ns()
            ros = int(self._ros_ns())
            if ros == 0:
                return 0  # use_sim_time before the first /clock: no time yet, not a jump
            last = self._last
            self._last = (ros, mono)
            if last is not None:
                self._check(ros - last[0], mono - last[1])
            return ros

    def _check(self, ros_step: int, mono_step: int) -> None:
        if ros_step < -BACKWARD_JUMP_NS:
            what = f'went back {-ros_step / 1e9:.3f} s'
        elif ros_step > FORWARD_JUMP_NS + MAX_RATE * max(mono_step, 0):
            what = f'jumped forward {ros_step / 1e9:.3f} s in {mono_step / 1e9:.3f} s'
        else:
            return
        self.jumps += 1
        self.last_jump = f'ROS clock {what}'

    def age_s(self, stamp_ns: int, now_ns: Optional[int] = None) -> float:
        """Return how old a stamp is now (s), never negative (a stamp ahead of now is 0 s old)."""
        now = self.now_ns() if now_ns is None else now_ns
        return max(0, now - stamp_ns) / 1e9

    def timing(self, stage: str, node: str, received_mono_ns: int, start_mono_ns: int,
               after_ns: int = 0) -> StageTiming:
        """
        Return a stage's timing record for a frame that ends now, on the ROS time line.

        Received and start are monotonic readings; their distances to the end are kept
        exactly, the end is the ROS time now. ``after_ns``: when the frame left the stage
        before (or was stamped); a clock that lags it (a /clock message not yet taken, a
        simulator's stamp) puts the receipt there, never before: no negative age or hop.
        """
        end_mono = self.mono_ns()
        end = self.now_ns()
        start = end - max(0, end_mono - start_mono_ns)
        received = start - max(0, start_mono_ns - received_mono_ns)
        if received < after_ns:
            lag = after_ns - received
            received, start, end = received + lag, start + lag, end + lag
        return StageTiming(stage, node, received, start, end)

    def to_ros_ns(self, mono_ns: int) -> int:
        """Place a monotonic reading on the ROS time line (as if ROS time ran at its pace now)."""
        return self.now_ns() - max(0, self.mono_ns() - mono_ns)

    def values(self) -> list[tuple[str, str]]:
        """Diagnostic values: jumps counted and the latest."""
        return [('clock_jumps', str(self.jumps)), ('last_clock_jump', self.last_jump or 'none')]


class JumpWatch:
    """Tell, once per jump, that a clock jumped since this watcher last looked."""

    def __init__(self, clock: NodeClock) -> None:
        self.clock = clock
        self._seen = clock.jumps

    def jumped(self) -> bool:
        """Return True once after each new jump of the clock."""
        jumps = self.clock.jumps
        if jumps == self._seen:
            return False
        self._seen = jumps
        return True

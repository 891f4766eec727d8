"""
Waiting for a periodic source's next frame: sleep most of the wait, poll the clock at its end.

Why not only ``time.sleep``: a thread that sleeps to the deadline wakes late by the kernel's
timer slack, and its CPU has been idle for most of the period. The first milliseconds of work
on a CPU woken from idle run measurably slower (cold caches, a virtual CPU the host gave away,
low clocks), and that work is the frame's capture and preprocess: the latency the pipeline
exists to keep short. Polling for the last part of the wait keeps the CPU awake for the
capture, at the cost of that much CPU time per frame (docs/benchmarks.md has the trade).
The poll yields the GIL at every turn, so other Python threads run during it.
"""

from __future__ import annotations

import time
from typing import Callable

#: Longest poll accepted (s): beyond this it is a busy loop, not a wake-up.
MAX_SPIN_S = 0.01


def sleep_until(deadline_s: float, spin_s: float = 0.0,
                clock: Callable[[], float] = time.perf_counter) -> float:
    """
    Return at ``deadline_s`` (``clock`` time) at the earliest, polling its last ``spin_s``.

    Returns how late it returned, in seconds (0 or more). ``spin_s`` is clipped to
    [0, MAX_SPIN_S]; with 0 this is a plain sleep.
    """
    spin_s = min(max(spin_s, 0.0), MAX_SPIN_S)
    remaining = deadline_s - clock()
    if remaining > spin_s:
        time.sleep(remaining - spin_s)
    now = clock()
    while now < deadline_s:
        time.sleep(0)  # gives up the GIL; returns at once, so the CPU stays awake
        now = clock()
    return now - deadline_s

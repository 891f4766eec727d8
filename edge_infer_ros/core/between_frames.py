"""
A stage's periodic diagnostics, run in the gap after a frame while frames flow.

Assembling and publishing a stage's status takes milliseconds of Python, and so does every wake
of the ROS executor that would run it from a timer. At a fixed phase against the camera (both
count the same clock) a 1 Hz timer kept landing inside frames, and with the GIL held it delayed
one frame a second: that was the composed pipeline's p99 (docs/benchmarks.md, round 3, night
session). Here a thread of its own, which costs little to wake, keeps the period, and while
frames flow the job runs in the frame's thread once the frame has been handed on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator, Optional


class BetweenFrames:
    """
    Run ``job`` once a period: at once when no frames flow, else right after the next frame.

    :meth:`start` starts the thread that calls :meth:`tick` every ``period_s``; the stage calls
    :meth:`frame_done` when it has handed a frame on. While the last frame ended less than half
    a period ago the job waits for the next :meth:`frame_done`; when frames stop, the next tick
    runs it, so it is at most one period late. While :meth:`held` (a lifecycle transition
    building or freeing what the job reads) a due run is skipped, never waited for: a
    transition may itself wait for the frame thread that would run it.
    """

    def __init__(self, job: Callable[[], None], period_s: float, name: str = 'periodic',
                 on_error: Optional[Callable[[BaseException], object]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._job = job
        self._on_error = on_error
        self.period_s = period_s
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()  # tick (its thread) and frame_done (frame threads)
        self._hold = threading.Lock()  # one run at a time, none while held()
        self._last_frame_s: Optional[float] = None
        self._due = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        #: runs that waited for a frame to end (the others ran from the thread)
        self.after_frame = 0
        #: due runs skipped because the job was held or already running
        self.skipped = 0

    def start(self) -> None:
        """Start the thread that keeps the period (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f'eir:{self._name}',
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop that thread (a job it is running finishes first)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.tick()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Keep the job from running meanwhile (waits for a run under way to end)."""
        with self._hold:
            yield

    def _run(self) -> None:
        self.run_exclusive(self._job)

    def run_exclusive(self, job: Callable[[], object]) -> bool:
        """
        Run ``job`` unless the periodic job runs or is held; return whether it ran.

        Also for other work on what the periodic job reads (a status published early, from
        any thread): one at a time, skipped rather than waited for. A failure goes to
        ``on_error``, never to the frame or the period.
        """
        if not self._hold.acquire(blocking=False):
            self.skipped += 1
            return False
        try:
            job()
        except Exception as error:  # noqa: B902 - any failure of the job is reported
            if self._on_error is None:
                raise
            self._on_error(error)
        finally:
            self._hold.release()
        return True

    def tick(self) -> None:
        """Run the job now, or mark it due after the next frame while frames flow."""
        with self._lock:
            last = self._last_frame_s
            self._due = last is not None and 0.0 <= self._clock() - last < 0.5 * self.period_s
            if self._due:
                return
        self._run()

    def frame_done(self) -> None:
        """Note a frame handed on; run the job if it is due."""
        with self._lock:
            self._last_frame_s = self._clock()
            due, self._due = self._due, False
            if due:
                self.after_frame += 1
        if due:
            self._run()

"""
Keep chosen CPUs out of idle while a frame is on its way to the inference that runs on them.

Why: a CPU that went idle in the gap between frames wakes slowly (a virtual machine's vCPU
halts and must be scheduled again by the host; a robot's core leaves a deep idle state). The
detector pins ONNX Runtime's pool threads to CPUs of their own, so the first operator of each
inference waited for that wake-up (docs/benchmarks.md, issue 28). A helper process per CPU,
pinned to it at the lowest priority there is (``SCHED_IDLE``: any other thread that wakes
there preempts it at once), spins from the moment a frame enters the process until its
inference ends, and never longer than a bound; between frames it sleeps on a pipe.

A process and not a thread: a thread spinning in Python would hold the GIL the stages need.
The helper imports only the standard library's ``os``, ``mmap``, ``signal``, ``sys`` and
``time``, reads one shared byte (spin or not), ignores Ctrl-C (its parent's to handle) and
exits when the pipe closes, which the kernel does if this process dies.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

#: Never spin longer than this per frame, whatever the caller asks (a frame that is refused
#: before its inference leaves the flag up; the bound ends that spin).
MAX_SPIN_NS = 100_000_000

#: The helper: pin, drop to SCHED_IDLE, then spin (bounded) each time a byte comes, until EOF.
_HELPER = """
import mmap, os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; EOF ends us
wake, shared, cpu, limit = (int(a) for a in sys.argv[1:5])
os.sched_setaffinity(0, {cpu})
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
flag = mmap.mmap(shared, 1)
clock = time.monotonic_ns
while os.read(wake, 64):
    end = clock() + limit
    while flag[0] and clock() < end:
        pass
"""


class AwakeError(RuntimeError):
    """The helpers could not be started (no such CPU, no SCHED_IDLE, not Linux)."""


class CpuKeeper:
    """
    Helper processes that keep ``cpus`` busy at idle priority between arm() and disarm().

    ``arm()`` costs the caller a byte written per CPU (and nothing while already armed);
    ``disarm()`` one byte of shared memory. A helper that died is noted in ``error``, never
    raised from arm() or disarm(): a frame must not fail for want of a warm CPU.
    """

    def __init__(self, cpus: Sequence[int], max_spin_ns: int) -> None:
        if not cpus:
            raise ValueError('no CPU to keep awake')
        if not 0 < max_spin_ns <= MAX_SPIN_NS:
            raise ValueError(f'max_spin_ns must be in (0, {MAX_SPIN_NS}], got {max_spin_ns}')
        self.cpus = sorted(set(cpus))
        self.max_spin_ns = max_spin_ns
        #: why the keeper stopped keeping CPUs awake ('' while it works)
        self.error = ''
        self.arms = 0  # frames that woke the helpers
        self._flag: Optional[mmap.mmap] = None
        self._wakes: list[int] = []
        self._helpers: list[subprocess.Popen[bytes]] = []
        self._armed_ns = 0
        self._lead_ns = 0  # sum over runs of how long before its run a frame armed the helpers
        self._runs = 0

    def start(self) -> None:
        """Start one helper per CPU; raise AwakeError if any cannot run."""
        if not (hasattr(os, 'memfd_create') and hasattr(os, 'SCHED_IDLE') and
                hasattr(os, 'sched_setaffinity')):
            raise AwakeError('needs Linux (memfd_create, SCHED_IDLE, sched_setaffinity)')
        missing = set(self.cpus) - os.sched_getaffinity(0)
        if missing:
            raise AwakeError(f"CPUs {sorted(missing)} are not among this process's")
        shared = os.memfd_create('edge_infer_ros-awake')
        try:
            os.ftruncate(shared, 1)
            self._flag = mmap.mmap(shared, 1)
            for cpu in self.cpus:
                self._spawn(shared, cpu)
        except (OSError, ValueError) as e:
            self.close()
            raise AwakeError(f'cannot start the helpers: {e}') from e
        finally:
            os.close(shared)
        self._check_started()

    def _spawn(self, shared: int, cpu: int) -> None:
        wake_read, wake_write = os.pipe()
        try:
            os.set_blocking(wake_write, False)  # a busy helper's full pipe must not block us
            helper = subprocess.Popen(
                [sys.executable, '-S', '-c', _HELPER, str(wake_read), str(shared), str(cpu),
                 str(self.max_spin_ns)], pass_fds=(wake_read, shared),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError:
            os.close(wake_write)
            raise
        finally:
            os.close(wake_read)
        self._wakes.append(wake_write)
        self._helpers.append(helper)

    def _check_started(self, timeout_s: float = 5.0) -> None:
        """Wait until every helper runs pinned at idle priority (or one has exited)."""
        deadline = time.monotonic() + timeout_s
        for helper in self._helpers:
            while time.monotonic() < deadline:
                if helper.poll() is not None:
                    why = helper.stderr.read().decode(errors='replace').strip().splitlines() \
                        if helper.stderr is not None else []
                    self.close()
                    raise AwakeError(f'a helper exited at start: {why[-1] if why else "?"}')
                try:
                    if os.sched_getscheduler(helper.pid) == os.SCHED_IDLE:
                        break
                except OSError:
                    pass
                time.sleep(0.005)
            else:
                self.close()
                raise AwakeError(f'the helpers did not start within {timeout_s} s')

    def arm(self) -> None:
        """Let the helpers spin: a frame is on its way (nothing to do while still armed)."""
        flag = self._flag
        if flag is None:
            return
        now = time.monotonic_ns()
        if flag[0] and now - self._armed_ns < self.max_spin_ns:
            return
        flag[0] = 1
        self._armed_ns = now
        self.arms += 1
        for wake in self._wakes:
            try:
                os.write(wake, b'\x01')
            except BlockingIOError:
                pass  # its pipe holds wakes enough
            except OSError as e:  # the helper is gone (killed): stop keeping CPUs awake
                self._fail(f'a helper is gone ({e.strerror or e})')
                return

    def before_run(self) -> None:
        """Note how early the frame armed the helpers as its inference starts (arm if none did)."""
        flag = self._flag
        if flag is None:
            return
        lead = time.monotonic_ns() - self._armed_ns
        if flag[0] and lead < self.max_spin_ns:
            self._lead_ns += lead
        else:
            self.arm()  # no stage of this process armed them: no lead
        self._runs += 1

    @property
    def mean_lead_ms(self) -> float:
        """Return how long before its inference a frame armed the helpers, on average (ms)."""
        return self._lead_ns / self._runs / 1e6 if self._runs else 0.0

    def disarm(self) -> None:
        """Let the helpers sleep again: the inference the frame needed them for has ended."""
        flag = self._flag
        if flag is not None:
            flag[0] = 0

    @property
    def armed(self) -> bool:
        """Tell whether the helpers may spin now (between arm() and disarm())."""
        return self._flag is not None and bool(self._flag[0])

    @property
    def running(self) -> bool:
        """Tell whether every helper is alive (False after close() or a failure)."""
        return self._flag is not None and all(h.poll() is None for h in self._helpers)

    def cpu_ns(self) -> int:
        """Return the CPU time the helpers used so far, ns (0 for one that cannot be read)."""
        total = 0
        for helper in self._helpers:
            try:  # the first field: time spent on a CPU, ns
                with open(f'/proc/{helper.pid}/schedstat', encoding='ascii') as stream:
                    total += int(stream.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return total

    def _fail(self, why: str) -> None:
        self.error = why
        self.close()

    def close(self) -> None:
        """Stop the helpers (their pipes close: each exits after its current spin)."""
        if self._flag is not None:
            self._flag[0] = 0
        for wake in self._wakes:
            os.close(wake)
        self._wakes = []
        for helper in self._helpers:
            try:
                helper.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
            if helper.stderr is not None:
                helper.stderr.close()
        self._helpers = []
        if self._flag is not None:
            self._flag.close()
            self._flag = None


class KeeperRegistry:
    """The keepers of one process: a frame that enters it arms them all (:meth:`frame_coming`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keepers: tuple[CpuKeeper, ...] = ()

    def add(self, keeper: CpuKeeper) -> None:
        """Arm ``keeper`` for every frame from now on."""
        with self._lock:
            self._keepers = self._keepers + (keeper,)

    def remove(self, keeper: CpuKeeper) -> None:
        """Stop arming ``keeper`` (unknown ones are ignored)."""
        with self._lock:
            self._keepers = tuple(k for k in self._keepers if k is not keeper)

    def __contains__(self, keeper: object) -> bool:
        """Tell whether ``keeper`` is armed by frames (this very object, not an equal one)."""
        return any(k is keeper for k in self._keepers)

    def frame_coming(self) -> None:
        """Arm every keeper: a frame entered the process and will reach their inference."""
        for keeper in self._keepers:  # a snapshot: add/remove replace the tuple
            keeper.arm()


#: This process's keepers (CPUs are the process's, so is the registry).
KEEPERS = KeeperRegistry()

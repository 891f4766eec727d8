"""sleep_until: never early, polls only its last part, bounded poll."""

import threading
import time

from edge_infer_ros.core.pacing import MAX_SPIN_S, sleep_until
import pytest


@pytest.mark.parametrize('spin_s', [0.0, 0.002, 1.0])
def test_never_returns_before_the_deadline(spin_s):
    for _ in range(20):
        deadline = time.perf_counter() + 0.003
        late = sleep_until(deadline, spin_s)
        assert time.perf_counter() >= deadline
        assert late >= 0.0


def test_a_deadline_in_the_past_returns_at_once():
    assert sleep_until(time.perf_counter() - 1.0, 0.002) >= 1.0


def test_the_poll_is_the_last_part_only():
    """With a 2 ms poll in a 50 ms wait, the process uses a few ms of CPU, not 50."""
    cpu = time.thread_time()
    sleep_until(time.perf_counter() + 0.05, 0.002)
    assert time.thread_time() - cpu < 0.025


def test_an_oversized_poll_is_clipped():
    """A spin far beyond MAX_SPIN_S must not turn the whole wait into a busy loop."""
    cpu = time.thread_time()
    sleep_until(time.perf_counter() + 0.1, 10.0)
    assert time.thread_time() - cpu < MAX_SPIN_S + 0.04


def test_other_threads_run_during_the_poll():
    ran = threading.Event()
    worker = threading.Thread(target=ran.set)
    deadline = time.perf_counter() + 0.05
    worker.start()
    sleep_until(deadline, 0.05)
    worker.join(timeout=1.0)
    assert ran.is_set()

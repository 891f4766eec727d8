"""Tests of the CPU keeper: helper processes that spin at idle priority between arm and disarm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from edge_infer_ros.core.awake import AwakeError, CpuKeeper, KeeperRegistry, MAX_SPIN_NS
import pytest

pytestmark = pytest.mark.skipif(not (hasattr(os, 'memfd_create') and hasattr(os, 'SCHED_IDLE')),
                                reason='the keeper needs Linux (memfd_create, SCHED_IDLE)')

#: The CPU the helpers spin on: the last of this process's (the one the detector pins to).
CPU = sorted(os.sched_getaffinity(0))[-1] if hasattr(os, 'sched_getaffinity') else 0
MS = 1_000_000


@pytest.fixture
def keeper():
    keepers = []

    def make(max_spin_ms: float = 100.0) -> CpuKeeper:
        made = CpuKeeper([CPU], int(max_spin_ms * MS))
        made.start()
        keepers.append(made)
        return made

    yield make
    for made in keepers:
        made.close()


def _spun_ms(keeper: CpuKeeper, seconds: float) -> float:
    before = keeper.cpu_ns()
    time.sleep(seconds)
    return (keeper.cpu_ns() - before) / MS


def test_helper_runs_pinned_to_its_cpu_at_idle_priority(keeper) -> None:
    kept = keeper()
    assert kept.running and not kept.armed
    for helper in kept._helpers:
        assert os.sched_getscheduler(helper.pid) == os.SCHED_IDLE
        assert os.sched_getaffinity(helper.pid) == {CPU}


def test_armed_helper_spins_until_disarmed_then_sleeps(keeper) -> None:
    kept = keeper()
    assert _spun_ms(kept, 0.1) < 5.0  # not armed: asleep on its pipe
    kept.arm()
    assert kept.armed
    assert _spun_ms(kept, 0.08) > 25.0  # this process sleeps: the CPU is the helper's
    kept.disarm()
    time.sleep(0.02)
    assert not kept.armed and _spun_ms(kept, 0.1) < 5.0
    assert kept.arms == 1


def test_a_frame_that_never_disarms_spins_no_longer_than_the_bound(keeper) -> None:
    kept = keeper(max_spin_ms=20.0)
    kept.arm()
    spun = _spun_ms(kept, 0.2)
    assert 3.0 < spun < 40.0, spun  # 20 ms and the helper's wake-up, not the 200 ms waited
    # Still armed past the bound: the next frame wakes the helper again.
    kept.arm()
    assert kept.arms == 2 and _spun_ms(kept, 0.2) > 3.0


def test_arming_again_while_armed_writes_nothing(keeper) -> None:
    kept = keeper()
    kept.arm()
    kept.arm()
    kept.arm()
    assert kept.arms == 1
    kept.disarm()


def test_the_lead_is_how_long_before_its_run_a_frame_armed_the_helpers(keeper) -> None:
    kept = keeper()
    kept.before_run()  # nobody armed: armed now, no lead
    first = kept.mean_lead_ms
    kept.disarm()
    kept.arm()
    time.sleep(0.02)
    kept.before_run()
    kept.disarm()
    assert first < 1.0 and kept.mean_lead_ms >= (first + 20.0) / 2 - 0.1
    assert kept.arms == 2


def test_a_killed_helper_is_reported_and_never_raised(keeper) -> None:
    kept = keeper()
    os.kill(kept._helpers[0].pid, signal.SIGKILL)
    kept._helpers[0].wait(5.0)
    kept.arm()  # the pipe is broken: noted, not raised
    assert not kept.running and 'gone' in kept.error
    kept.arm()
    kept.disarm()  # no-ops from now on


def test_close_ends_the_helpers_and_may_be_repeated(keeper) -> None:
    kept = keeper()
    helpers = list(kept._helpers)
    kept.arm()  # even mid-spin
    kept.close()
    assert all(helper.poll() is not None for helper in helpers)
    assert not kept.running and not kept.armed
    kept.close()
    kept.arm()
    kept.disarm()


def test_helpers_exit_when_their_parent_dies_mid_spin() -> None:
    # The parent is SIGKILLed with the flag up: the helper ends its bounded spin, then sees
    # its pipe closed by the kernel and exits (no orphan left spinning on a robot).
    code = ('import os, sys, time\n'
            'from edge_infer_ros.core.awake import CpuKeeper\n'
            f'kept = CpuKeeper([{CPU}], 50_000_000)\n'
            'kept.start(); kept.arm()\n'
            'print(*(h.pid for h in kept._helpers), flush=True)\n'
            'time.sleep(60)\n')
    parent = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert pids
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    """Tell whether ``pid`` runs (a zombie waiting for init to reap it counts as ended)."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii') as stream:
            return stream.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match='no CPU'):
        CpuKeeper([], MS)
    for bad in (0, -1, MAX_SPIN_NS + 1):
        with pytest.raises(ValueError, match='max_spin_ns'):
            CpuKeeper([CPU], bad)
    foreign = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(AwakeError, match=f'CPUs \\[{foreign}\\] are not among'):
        CpuKeeper([foreign], MS).start()


def test_registry_arms_the_keepers_it_holds_only(keeper) -> None:
    registry = KeeperRegistry()
    first, second = keeper(), keeper()
    registry.add(first)
    registry.add(second)
    registry.frame_coming()
    assert first.armed and second.armed
    first.disarm()
    second.disarm()
    registry.remove(second)
    registry.remove(second)  # unknown now: ignored
    registry.frame_coming()
    assert first.armed and not second.armed
    assert (first.arms, second.arms) == (2, 1)
    first.disarm()

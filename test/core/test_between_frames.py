"""BetweenFrames: a stage's periodic job never runs inside a frame while frames flow."""

import threading

from edge_infer_ros.core.between_frames import BetweenFrames


class FakeClock:
    """Seconds the test moves by hand (the class takes any monotonic reading)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_frames_each_tick_runs_the_job_at_once() -> None:
    runs = []
    job = BetweenFrames(lambda: runs.append('run'), 1.0, clock=FakeClock())
    job.tick()
    job.tick()
    assert runs == ['run', 'run'] and job.after_frame == 0


def test_while_frames_flow_the_job_waits_for_the_next_frame_to_end() -> None:
    clock, runs = FakeClock(), []
    job = BetweenFrames(lambda: runs.append(clock.now), 1.0, clock=clock)
    job.frame_done()
    clock.now += 0.2
    job.tick()  # a frame ended 0.2 s ago: frames flow, the next one may be under way
    assert runs == []
    clock.now += 0.033
    job.frame_done()
    assert runs == [clock.now] and job.after_frame == 1
    job.frame_done()  # once per tick, not once per frame
    assert len(runs) == 1


def test_when_frames_stop_the_next_tick_runs_the_job() -> None:
    clock, runs = FakeClock(), []
    job = BetweenFrames(lambda: runs.append(clock.now), 1.0, clock=clock)
    job.frame_done()
    clock.now += 0.1
    job.tick()  # due, but no frame comes
    clock.now += 1.0
    job.tick()  # the last frame ended 1.1 s ago: at once
    assert runs == [clock.now] and job.after_frame == 0


def test_the_period_decides_what_flowing_means() -> None:
    clock, runs = FakeClock(), []
    job = BetweenFrames(lambda: runs.append(clock.now), 10.0, clock=clock)
    job.frame_done()
    clock.now += 4.0
    job.tick()  # under half of 10 s: waits
    assert runs == []
    job.period_s = 2.0  # the diagnostics period changed at run time
    job.tick()  # 4 s is over half of 2 s: at once
    assert runs == [clock.now]


def test_its_thread_keeps_the_period_survives_a_failing_job_and_stops() -> None:
    ran = threading.Event()
    errors: list[BaseException] = []
    calls = []

    def job() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('first run fails')
        ran.set()
    periodic = BetweenFrames(job, 0.01, 'test', on_error=errors.append)
    periodic.start()
    try:
        assert ran.wait(5.0), 'the job did not run again after failing'
    finally:
        periodic.stop()
    assert [str(e) for e in errors] == ['first run fails']
    stopped_at = len(calls)
    threading.Event().wait(0.05)
    assert len(calls) == stopped_at  # no run after stop()


def test_a_failing_job_is_reported_and_never_reaches_the_frame() -> None:
    clock, errors = FakeClock(), []

    def job() -> None:
        raise RuntimeError('status failed')
    periodic = BetweenFrames(job, 1.0, on_error=errors.append, clock=clock)
    periodic.frame_done()
    periodic.tick()  # due
    periodic.frame_done()  # the stage's frame thread: the failure must not reach it
    assert [str(e) for e in errors] == ['status failed'] and periodic.after_frame == 1


def test_while_held_a_due_run_is_skipped_not_waited_for() -> None:
    runs: list[int] = []
    periodic = BetweenFrames(lambda: runs.append(1), 1.0, clock=FakeClock())
    with periodic.held():  # a transition builds what the job reads
        periodic.tick()  # from its thread: returns at once, no run
    assert runs == [] and periodic.skipped == 1
    periodic.tick()
    assert runs == [1]


def test_held_waits_for_a_run_under_way() -> None:
    started, release, order = threading.Event(), threading.Event(), []

    def job() -> None:
        started.set()
        release.wait(5.0)
        order.append('job ended')
    periodic = BetweenFrames(job, 1.0, clock=FakeClock())
    runner = threading.Thread(target=periodic.tick)
    runner.start()
    assert started.wait(5.0)

    def hold() -> None:
        with periodic.held():
            order.append('held')
    holder = threading.Thread(target=hold)
    holder.start()
    holder.join(0.05)
    assert order == []  # still waiting for the run
    release.set()
    runner.join(5.0)
    holder.join(5.0)
    assert order == ['job ended', 'held']


def test_other_work_runs_under_the_same_rule() -> None:
    """A status published early (from any thread) never runs beside the periodic one."""
    errors: list[BaseException] = []
    periodic = BetweenFrames(lambda: None, 1.0, on_error=errors.append, clock=FakeClock())
    ran: list[str] = []
    assert periodic.run_exclusive(lambda: ran.append('early'))
    with periodic.held():
        assert not periodic.run_exclusive(lambda: ran.append('while held'))
    assert ran == ['early'] and periodic.skipped == 1

    def failing() -> None:
        raise RuntimeError('status failed')
    assert periodic.run_exclusive(failing)  # reported, not raised to the caller
    assert [str(e) for e in errors] == ['status failed']

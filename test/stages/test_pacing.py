"""CapturePacer: the camera's rate, just-in-time capture when paced, no burst after a stall."""

from __future__ import annotations

from edge_infer_ros.stages.pacing import CapturePacer
import pytest

PERIOD = 0.1


def test_unpaced_it_keeps_the_rate_whatever_the_work_took() -> None:
    pacer = CapturePacer(start_s=10.0)
    # Frame 0 began at 10.0 and was published at 10.03: the next is due at 10.1.
    assert pacer.delay(10.0, 10.03, 10.03, PERIOD) == pytest.approx(0.07)
    assert pacer.idle_ns == pytest.approx(70_000_000, abs=1)
    # A readiness report does not move an unpaced camera.
    assert pacer.delay(10.1, 10.12, 10.12, PERIOD, ready_ns=int(10.5e9)) == pytest.approx(0.08)


def test_paced_it_captures_so_that_the_frame_is_ready_when_the_stage_is_free() -> None:
    pacer = CapturePacer(start_s=0.0)
    # The detector is busy until 0.25 s; capture + preprocess took 0.02 s: capture at 0.23.
    wait = pacer.delay(0.0, 0.02, 0.02, 0.001, ready_ns=int(0.25e9), pace=True)
    assert wait == pytest.approx(0.21)
    assert pacer.work_s == pytest.approx(0.02)


def test_one_stalled_frame_counts_at_most_twice_the_mean() -> None:
    pacer = CapturePacer(start_s=0.0)
    pacer.delay(0.0, 0.02, 0.02, 0.001, ready_ns=int(0.25e9), pace=True)
    pacer.delay(0.23, 1.23, 1.23, 0.001, ready_ns=int(1.5e9), pace=True)  # took 1 s
    assert pacer.work_s == pytest.approx(0.02 + 0.1 * (0.04 - 0.02))


def test_a_camera_far_behind_starts_again_from_now_instead_of_bursting() -> None:
    pacer = CapturePacer(start_s=0.0)
    wait = pacer.delay(0.0, 0.5, 0.5, PERIOD)  # the frame took 5 periods
    assert wait == pytest.approx(-0.4)
    assert pacer.idle_ns == 0
    # Due one period after now, not at 0.2, 0.3, ... all at once.
    assert pacer.delay(0.5, 0.51, 0.51, PERIOD) == pytest.approx(0.09)


def test_a_little_behind_it_catches_up_without_skipping() -> None:
    pacer = CapturePacer(start_s=0.0)
    assert pacer.delay(0.0, 0.15, 0.15, PERIOD) == pytest.approx(-0.05)
    assert pacer.delay(0.15, 0.16, 0.16, PERIOD) == pytest.approx(0.04)  # due at 0.2

"""The action stage's steering policy, commander and drive camera."""

from __future__ import annotations

from edge_infer_ros.core.payloads import DetectionPayload
from edge_infer_ros.stages.action import (ActionPolicy, CommandCounts, DriveCamera,
                                          FrameCommander, MAX_DRIVE_CAMERAS)
import numpy as np

NAMES = ('ball', 'box', 'cone', 'person')


def _detections(*rows: tuple) -> DetectionPayload:
    boxes = np.array([r[0] for r in rows], np.float32).reshape(-1, 4)
    scores = np.array([r[1] for r in rows], np.float32)
    classes = np.array([NAMES.index(r[2]) for r in rows], np.int32)
    return DetectionPayload(boxes, scores, classes, NAMES, 640, 480)


def test_policy_steers_toward_the_most_confident_target() -> None:
    policy = ActionPolicy()
    right = _detections(((500, 200, 560, 260), 0.9, 'ball'), ((60, 200, 100, 240), 0.5, 'ball'))
    command = policy.decide(right)
    assert command.angular_z < 0 and command.linear_x > 0 and not command.stop
    assert command.target_index == 0
    left = _detections(((20, 200, 80, 260), 0.9, 'ball'))
    assert policy.decide(left).angular_z > 0


def test_policy_stops_for_a_near_obstacle_only() -> None:
    policy = ActionPolicy()
    far = _detections(((300, 100, 340, 160), 0.9, 'person'), ((400, 200, 440, 240), 0.9, 'ball'))
    assert not policy.decide(far).stop
    near = _detections(((300, 100, 420, 400), 0.9, 'person'), ((400, 200, 440, 240), 0.9, 'ball'))
    command = policy.decide(near)
    assert command.stop and command.linear_x == 0.0 and 'person' in command.reason
    unsure = _detections(((300, 100, 420, 400), 0.2, 'person'))
    assert not policy.decide(unsure).stop  # below min_score: ignored


def test_policy_without_target_holds_still() -> None:
    command = ActionPolicy().decide(_detections(((0, 0, 10, 10), 0.9, 'cone')))
    assert (command.linear_x, command.angular_z, command.target_index) == (0.0, 0.0, -1)


MS = 1_000_000
BALL_AHEAD = ((300, 200, 340, 240), 0.9, 'ball')


def test_a_fresh_frame_gets_the_policy_command() -> None:
    commander = FrameCommander(ActionPolicy(), max_frame_age_s=0.5)
    detections = _detections(BALL_AHEAD)
    command, fresh = commander.command(detections, 1000 * MS, 1100 * MS)
    assert fresh and command == ActionPolicy().decide(detections) and not command.stop
    assert commander.counts == CommandCounts(commands=1)


def test_a_stale_frame_gets_a_stop_and_is_not_fresh() -> None:
    commander = FrameCommander(ActionPolicy(), max_frame_age_s=0.5)
    command, fresh = commander.command(_detections(BALL_AHEAD), 1000 * MS, 1501 * MS)
    assert not fresh
    assert (command.linear_x, command.angular_z, command.stop) == (0.0, 0.0, True)
    assert command.reason == 'frame 0.501 s old > max_frame_age_s'
    assert commander.counts == CommandCounts(commands=1, stops=1, stale_frames=1)


def test_a_frame_exactly_max_frame_age_s_old_is_still_fresh() -> None:
    commander = FrameCommander(ActionPolicy(), max_frame_age_s=0.5)
    assert commander.command(_detections(BALL_AHEAD), 0, 500 * MS)[1]


def test_commands_stops_and_ignored_detections_are_counted() -> None:
    commander = FrameCommander(ActionPolicy(), max_frame_age_s=0.5)
    near_person = _detections(((300, 100, 420, 400), 0.9, 'person'))
    outside = _detections(((600, 200, 900, 240), 0.9, 'ball'), BALL_AHEAD)  # box off the image
    for detections in (near_person, outside, near_person):
        commander.command(detections, 0, 0)
    commander.command(outside, 0, 600 * MS)  # stale: the policy does not see it
    assert commander.counts == CommandCounts(commands=4, stops=3, stale_frames=1,
                                             ignored_detections=1)


def test_a_new_max_frame_age_applies_to_the_next_frame() -> None:
    commander = FrameCommander(ActionPolicy(), max_frame_age_s=0.5)
    commander.max_frame_age_s = 0.1
    assert not commander.command(_detections(BALL_AHEAD), 0, 200 * MS)[1]


def test_drive_camera_ignores_the_other_cameras() -> None:
    drive = DriveCamera('front')
    assert drive.admit('front') == (True, '')
    assert drive.admit('rear') == (False, '')
    assert drive.admit('rear') == (False, '') and drive.other_camera_frames == 2
    assert drive.admit('front') == (True, '') and drive.missing() == ''


def test_without_drive_camera_a_second_camera_stops_the_robot() -> None:
    drive = DriveCamera()
    assert drive.admit('front') == (True, '')
    drives, refusal = drive.admit('rear')
    assert not drives and 'set drive_camera' in refusal and 'front, rear' in refusal
    assert drive.admit('front')[0] is False and drive.ambiguous_frames == 2
    drive.reset('rear')
    assert drive.admit('rear') == (True, '') and drive.ambiguity() == ''


def test_a_drive_camera_that_never_sends_is_named() -> None:
    drive = DriveCamera('front_camera')
    drive.admit('front_optical_frame')
    assert "drive_camera 'front_camera' sent no frame" in drive.missing()
    for index in range(MAX_DRIVE_CAMERAS * 2):  # names from frames: bounded
        drive.admit(f'camera{index}')
    assert len(drive.cameras_seen) == MAX_DRIVE_CAMERAS

"""
Detections to a control command: steer toward a target class, stop for a near obstacle.

Why plain: this is the policy a robotics engineer will replace or tune first, and its rules
(which detection is the target, when an obstacle is near) must be testable without ROS.

The policy drives an actuator, so it trusts no row it is given that its maker did not check
(``validate.rows_trusted``: NMS in this process): detections that are not finite, inverted,
outside the image, with scores outside [0, 1] or unknown class ids are ignored and counted
(``Command.ignored``), and the command is clamped and checked at the last step
(:func:`bounded_command`), so it is finite and within the limits whatever came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

from edge_infer_ros.core import validate
from edge_infer_ros.core.payloads import Command, DetectionPayload


def _limit(value: float) -> float:
    """Return a usable speed limit: non-negative and finite (else 0: no motion)."""
    return abs(value) if math.isfinite(value) else 0.0


def bounded_command(command: Command, max_linear_speed: float,
                    max_angular_speed: float) -> Command:
    """
    Return ``command`` clamped to the limits; a non-finite speed gives a stop.

    The last step before a command leaves the stage, whatever computed it.
    """
    linear, angular = float(command.linear_x), float(command.angular_z)
    if not (math.isfinite(linear) and math.isfinite(angular)):
        return Command(0.0, 0.0, True, f'non-finite command refused ({command.reason})',
                       -1, command.ignored)
    max_linear, max_angular = _limit(max_linear_speed), _limit(max_angular_speed)
    clamped_linear = min(max(linear, -max_linear), max_linear)
    clamped_angular = min(max(angular, -max_angular), max_angular)
    if (clamped_linear, clamped_angular) == (linear, angular):
        return command
    return Command(clamped_linear, clamped_angular, command.stop, command.reason,
                   command.target_index, command.ignored)


@dataclass(frozen=True)
class ActionPolicy:
    """
    Parameters of the steering policy.

    An obstacle is *near* when its box covers at least ``near_field_fraction`` of the image
    height (objects on the floor grow as the robot approaches); any near obstacle stops the
    robot. Otherwise the robot turns toward the most confident target-class detection with a
    proportional gain on its horizontal offset, and drives slower the closer the target is.
    """

    target_classes: tuple[str, ...] = ('ball',)
    obstacle_classes: tuple[str, ...] = ('person',)
    min_score: float = 0.4
    near_field_fraction: float = 0.45
    max_linear_speed: float = 0.5
    max_angular_speed: float = 1.0
    steering_gain: float = 1.5

    def unknown_classes(self, class_names: tuple[str, ...]) -> tuple[str, ...]:
        """Return the target and obstacle classes the model does not have (nothing matches)."""
        known = set(class_names)
        return tuple(name for name in self.target_classes + self.obstacle_classes
                     if name not in known)

    def decide(self, detections: DetectionPayload) -> Command:
        """Return the command for one frame's detections, finite and within the limits."""
        return bounded_command(self._decide(detections), self.max_linear_speed,
                               self.max_angular_speed)

    def _decide(self, detections: DetectionPayload) -> Command:
        width, height = detections.image_width, detections.image_height
        boxes, scores, class_ids = detections.boxes, detections.scores, detections.class_ids
        count = len(scores)
        if not (1 <= width <= validate.MAX_IMAGE_SIDE and 1 <= height <= validate.MAX_IMAGE_SIDE
                and boxes.shape == (count, 4) and class_ids.shape == (count,)):
            return Command(0.0, 0.0, True, f'detections of a {width}x{height} image with '
                           f'{list(boxes.shape)} boxes cannot be trusted', -1, count)
        names = detections.class_names
        num_classes = len(names) or validate.MAX_CLASSES
        best = -1
        best_score = -1.0
        near_obstacle = ''
        box_rows, score_rows, class_rows = boxes.tolist(), scores.tolist(), class_ids.tolist()
        # Rows their maker checked (NMS in this process) are not judged twice.
        broken = [] if validate.rows_trusted(detections) else validate.broken_rows(
            box_rows, score_rows, class_rows, num_classes, (width, height))
        ignored = len(broken)
        rows = zip(box_rows, score_rows, class_rows)
        for index, ((x_min, y_min, x_max, y_max), score, class_id) in enumerate(rows):
            if broken and index in broken:
                continue
            if score < self.min_score:
                continue
            name = names[class_id] if class_id < len(names) else str(class_id)
            if name in self.obstacle_classes and \
                    y_max - y_min >= self.near_field_fraction * height:
                near_obstacle = name
            if name in self.target_classes and score > best_score:
                best, best_score = index, score
        if near_obstacle:
            return Command(0.0, 0.0, True, f'{near_obstacle} in the near field', best, ignored)
        if best < 0:
            return Command(0.0, 0.0, False, 'no target in view', -1, ignored)
        x_min, y_min, x_max, y_max = boxes[best].tolist()
        offset = ((x_min + x_max) / 2.0 - width / 2.0) / (width / 2.0)  # -1 left .. +1 right
        angular = min(max(-self.steering_gain * offset, -self.max_angular_speed),
                      self.max_angular_speed)
        closeness = min(1.0, (y_max - y_min) / height / max(self.near_field_fraction, 1e-6))
        linear = self.max_linear_speed * (1.0 - closeness) * (1.0 - min(1.0, abs(offset)))
        name = names[int(class_ids[best])] if int(class_ids[best]) < len(names) else ''
        return Command(linear, angular, False, f'tracking {name}', best, ignored)


@dataclass
class CommandCounts:
    """What the action stage decided since it started."""

    commands: int = 0
    stops: int = 0
    stale_frames: int = 0
    ignored_detections: int = 0


@dataclass
class FrameCommander:
    """
    One command per frame: a stop for a frame captured too long ago, else the policy's.

    A stop for a stale frame keeps the robot from acting on an old view of the world; such a
    frame is not *fresh*, so it does not hold off the watchdog either. Every decision is
    counted in ``counts``.
    """

    policy: ActionPolicy
    max_frame_age_s: float
    counts: CommandCounts = field(default_factory=CommandCounts)

    def command(self, detections: DetectionPayload, stamp_ns: int,
                now_ns: int) -> tuple[Command, bool]:
        """Return the frame's command and whether the frame was fresh."""
        age_s = (now_ns - stamp_ns) / 1e9
        fresh = age_s <= self.max_frame_age_s
        if fresh:
            command = self.policy.decide(detections)
        else:
            self.counts.stale_frames += 1
            command = Command(0.0, 0.0, True, f'frame {age_s:.3f} s old > max_frame_age_s')
        self.counts.commands += 1
        self.counts.stops += command.stop
        self.counts.ignored_detections += command.ignored
        return command, fresh


#: Most cameras the drive rule remembers (names from the frames: bounded state).
MAX_DRIVE_CAMERAS = 64


@dataclass
class DriveCamera:
    """
    Which camera's frames may steer the robot.

    Several cameras can feed one detector; their commands must not interleave on one
    ``cmd_vel`` (a target seen behind the robot would steer it as if ahead). With
    ``drive_camera`` set, only that camera's frames give commands and the others are ignored
    and counted. Unset, the stage drives while a single camera sends frames and refuses to
    drive (stops) once a second one appears, saying what to set.
    """

    drive_camera: str = ''
    cameras_seen: list[str] = field(default_factory=list)
    other_camera_frames: int = 0
    ambiguous_frames: int = 0

    def reset(self, drive_camera: str) -> None:
        """Start again (a new ``drive_camera``, or the stage activated anew)."""
        self.drive_camera = drive_camera
        self.cameras_seen.clear()

    def admit(self, camera: str) -> tuple[bool, str]:
        """
        Return (drives, refusal) for a frame of ``camera``.

        ``(True, '')``: the frame's command is published. ``(False, '')``: another camera's
        frame, ignored (counted). ``(False, reason)``: the robot must stop, for ``reason``.
        """
        if camera not in self.cameras_seen and len(self.cameras_seen) < MAX_DRIVE_CAMERAS:
            self.cameras_seen.append(camera)
        if self.drive_camera:
            if camera == self.drive_camera:
                return True, ''
            self.other_camera_frames += 1
            return False, ''
        if len(self.cameras_seen) > 1:
            self.ambiguous_frames += 1
            return False, self.ambiguity()
        return True, ''

    def ambiguity(self) -> str:
        """Return why the stage refuses to drive ('' while it may)."""
        if self.drive_camera or len(self.cameras_seen) < 2:
            return ''
        shown = ', '.join(self.cameras_seen[:8])
        return (f'frames from {len(self.cameras_seen)} cameras ({shown}) and no drive_camera: '
                'stopping; set drive_camera to the camera that steers the robot')

    def missing(self) -> str:
        """Return a warning while other cameras send frames but drive_camera sends none."""
        if self.drive_camera and self.cameras_seen and \
                self.drive_camera not in self.cameras_seen:
            shown = ', '.join(self.cameras_seen[:8])
            return (f'drive_camera {self.drive_camera!r} sent no frame; frames came from '
                    f"{shown} (ignored): check drive_camera against the frames' frame_id")
        return ''

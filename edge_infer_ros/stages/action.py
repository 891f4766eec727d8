"""
Detections to a control command: steer toward a target class, stop for a near obstacle.

Why plain: this is the policy a robotics engineer will replace or tune first, and its rules
(which detection is the target, when an obstacle is near) must be testable without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_infer_ros.core.payloads import Command, DetectionPayload
import numpy as np


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

    def decide(self, detections: DetectionPayload) -> Command:
        """Return the command for one frame's detections."""
        width = max(1, detections.image_width)
        height = max(1, detections.image_height)
        names = detections.class_names
        best = -1
        best_score = -1.0
        near_obstacle = ''
        boxes, scores, class_ids = detections.boxes, detections.scores, detections.class_ids
        for index in range(len(scores)):
            score = float(scores[index])
            if score < self.min_score:
                continue
            class_id = int(class_ids[index])
            name = names[class_id] if 0 <= class_id < len(names) else str(class_id)
            if name in self.obstacle_classes:
                box_height = float(boxes[index, 3] - boxes[index, 1])
                if box_height >= self.near_field_fraction * height:
                    near_obstacle = name
            if name in self.target_classes and score > best_score:
                best, best_score = index, score
        if near_obstacle:
            return Command(0.0, 0.0, True, f'{near_obstacle} in the near field', best)
        if best < 0:
            return Command(0.0, 0.0, False, 'no target in view', -1)
        x_min, y_min, x_max, y_max = (float(v) for v in boxes[best])
        offset = ((x_min + x_max) / 2.0 - width / 2.0) / (width / 2.0)  # -1 left .. +1 right
        angular = float(np.clip(-self.steering_gain * offset, -self.max_angular_speed,
                                self.max_angular_speed))
        closeness = min(1.0, (y_max - y_min) / height / max(self.near_field_fraction, 1e-6))
        linear = self.max_linear_speed * (1.0 - closeness) * (1.0 - min(1.0, abs(offset)))
        name = names[int(class_ids[best])] if int(class_ids[best]) < len(names) else ''
        return Command(linear, angular, False, f'tracking {name}', best)

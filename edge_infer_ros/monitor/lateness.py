"""
Lateness at the last stage: a frame is judged against its camera's deadline before it acts.

Why here: the budget monitor sees a frame only after its command went out, so a controller
heard of a deadline miss after acting on the late frame. The action stage asks this gate first,
publishes the miss, then applies the policy to the frame's command. The deadline and the blame
are the monitor's own (``BudgetConfig.for_camera``, :func:`~edge_infer_ros.monitor.tracker.blame`),
so both judge a frame the same way. Plain, so the policies are tested without ROS.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from edge_infer_ros.core.frame import FrameTrace
from edge_infer_ros.core.payloads import Command
from edge_infer_ros.monitor.config import BudgetConfig
from edge_infer_ros.monitor.tracker import blame
from edge_infer_ros.monitor.verdicts import DeadlineMiss

#: What happens to the command of a late frame: a stop, no command at all, or the command.
LATE_FRAME_POLICIES = ('stop', 'hold', 'publish')


@dataclasses.dataclass
class LatenessCounts:
    """What the gate decided since the stage started."""

    late_frames: int = 0
    stopped: int = 0
    held: int = 0
    published_late: int = 0
    #: Frames captured before judging began (start-up grace): never called late.
    not_judged: int = 0


class LateFrameGate:
    """
    Judge each frame's age against its camera's deadline; turn a late frame's command.

    Frames captured before ``start(now) + grace_s`` are not judged: the first frames after a
    start pay discovery and first allocations that say nothing about the running pipeline.
    """

    def __init__(self, config: BudgetConfig, policy: str = 'stop', grace_s: float = 1.0) -> None:
        if policy not in LATE_FRAME_POLICIES:
            raise ValueError(f'late_frame_policy {policy!r}: expected one of '
                             f'{", ".join(LATE_FRAME_POLICIES)}')
        self.policy = policy
        self.grace_ns = int(grace_s * 1e9)
        self.counts = LatenessCounts()
        #: Capture time from which frames are judged (None: not started).
        self.judge_from_ns: Optional[int] = None
        self._config = config
        self._per_camera: dict[str, BudgetConfig] = {}

    def set_config(self, config: BudgetConfig) -> None:
        """Judge the next frame by new budgets (a new deadline or budget file)."""
        self._config = config
        self._per_camera.clear()

    def start(self, now_ns: int) -> None:
        """Begin judging frames captured ``grace_s`` from now on."""
        self.judge_from_ns = now_ns + self.grace_ns

    def deadline_ms(self, camera: str) -> float:
        """Return the deadline of a camera's frames (its section of the file, or the default)."""
        return float(self._budgets(camera).deadline_ms)

    def _budgets(self, camera: str) -> BudgetConfig:
        config = self._per_camera.get(camera)
        if config is None:
            config = self._config.for_camera(camera)
            if camera in self._config.cameras:  # bounded by the file's sections
                self._per_camera[camera] = config
        return config

    def is_late(self, camera: str, stamp_ns: int, now_ns: int) -> bool:
        """Tell whether a frame captured at ``stamp_ns`` is past its deadline at ``now_ns``."""
        if self.judge_from_ns is None or stamp_ns < self.judge_from_ns:
            self.counts.not_judged += 1
            return False
        return (now_ns - stamp_ns) / 1e6 > self.deadline_ms(camera)

    def miss(self, trace: FrameTrace, now_ns: int) -> DeadlineMiss:
        """Return the deadline miss of a late frame, blaming the item most over budget."""
        self.counts.late_frames += 1
        return blame(trace, self._budgets(trace.camera), (now_ns - trace.stamp_ns) / 1e6)

    def command_for(self, command: Command, miss: DeadlineMiss) -> Optional[Command]:
        """Return what to publish for a late frame under the policy (None: nothing)."""
        if self.policy == 'publish':
            self.counts.published_late += 1
            return command
        if self.policy == 'hold':
            self.counts.held += 1
            return None
        self.counts.stopped += 1
        return Command(0.0, 0.0, True, f'late frame: {miss.latency_ms:.1f} ms > deadline '
                       f'{miss.deadline_ms:.1f} ms ({miss.worst_stage} over budget)',
                       -1, command.ignored)

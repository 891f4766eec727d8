"""
A stage's own health: which of its problems its diagnostics status names, at what level.

A stage can have several problems at once; its status shows one, the most urgent:

1. ERROR: frames failed within the last two diagnostics periods (at least a second), or the
   stage is not configured and has an error (a configure that failed);
2. WARN, a lasting fault of the stage (backend fallback, stamps going back);
3. WARN, the latest incompatible-QoS report (no data flows on that topic);
4. WARN, why shared memory is not used although asked for;
5. WARN, frames lost in transport above the rate;
6. WARN, the stage's own least urgent warning (watchdog stops, unpinned model, classes);
7. OK: ``running`` while active, else ``not active``.

Why plain: the order is a decision worth a test of its own, and the node should only turn the
result into a ``diagnostic_msgs/DiagnosticStatus``.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Iterable, Optional, Sequence

#: Longest status message (the rest is cut): diagnostics aggregators show one line.
MAX_MESSAGE = 1024


class Level(enum.IntEnum):
    """Status levels, numerically equal to diagnostic_msgs/DiagnosticStatus's."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3

    def as_byte(self) -> bytes:
        """Return the level as rclpy's ``byte`` field of DiagnosticStatus wants it."""
        return bytes((int(self),))


@dataclasses.dataclass(frozen=True)
class HealthSources:
    """What a stage knows about its own health at one instant ('' or None: no problem)."""

    active: bool
    configured: bool
    now_ns: int
    diagnostics_period_s: float
    last_error: str = ''
    last_error_ns: int = 0  # when frames last failed (0: never)
    fault: str = ''
    qos_warnings: Sequence[str] = ()  # the latest is shown
    shm_note: str = ''
    transport_loss: Optional[str] = None
    stage_warning: str = ''
    #: Key/value pairs after ``state`` (counters, transport, the stage's own values).
    values: Sequence[tuple[str, str]] = ()


@dataclasses.dataclass(frozen=True)
class StageHealth:
    """A stage's status: its level, the message of the problem that won, its values."""

    level: Level
    message: str
    values: list[tuple[str, str]]


def state_name(active: bool, configured: bool) -> str:
    """Return the lifecycle state as the ``state`` value shows it."""
    return 'active' if active else 'inactive' if configured else 'unconfigured'


def errors_recent(now_ns: int, last_error_ns: int, diagnostics_period_s: float) -> bool:
    """Tell whether frames failed within the last two periods (at least the last second)."""
    recent_ns = max(2.0 * diagnostics_period_s, 1.0) * 1e9
    # An error 'after' now is one from before a clock jump back: not recent, never stuck.
    return bool(last_error_ns) and 0 <= now_ns - last_error_ns < recent_ns


def judge(sources: HealthSources) -> tuple[Level, str]:
    """Return the level and message of the most urgent problem (the order above)."""
    s = sources
    if errors_recent(s.now_ns, s.last_error_ns, s.diagnostics_period_s) or \
            (s.last_error and not s.configured):
        return Level.ERROR, s.last_error
    warnings = (s.fault, s.qos_warnings[-1] if s.qos_warnings else '', s.shm_note,
                s.transport_loss or '', s.stage_warning)
    for warning in warnings:
        if warning:
            return Level.WARN, warning
    return Level.OK, 'running' if s.active else 'not active'


def stage_health(sources: HealthSources) -> StageHealth:
    """Judge the sources; the values start with the lifecycle state."""
    level, message = judge(sources)
    values = [('state', state_name(sources.active, sources.configured)), *sources.values]
    return StageHealth(level, message[:MAX_MESSAGE], values)


#: Bytes of an endpoint GID that name its participant (a DDS GUID prefix; the rest: the entity).
PARTICIPANT_PREFIX = 12


def name_clash(fqn: str, endpoints: Iterable[tuple[str, str, bytes]]) -> str:
    """
    Return a WARN when nodes of this fully qualified name live in more than one participant.

    ``endpoints`` are (node name, namespace, endpoint GID) of one topic every node publishes
    (``/parameter_events``). Why: two pipelines with the same node names (a second launch,
    another robot in the domain) start without a word from ROS and take each other's frames,
    parameters and services. Nodes of one participant (one process's context) are not
    counted twice: the graph keeps a destroyed one there a while.
    """
    participants = {bytes(gid[:PARTICIPANT_PREFIX]) for name, namespace, gid in endpoints
                    if f'{namespace.rstrip("/")}/{name}' == fqn}
    count = len(participants)
    if count < 2:
        return ''
    others = 'another node' if count == 2 else f'{count - 1} other nodes'
    return (f'{others} in the graph also named {fqn} (another process): this {fqn} and the '
            "other take each other's frames and parameters; give each pipeline its own "
            'namespace (namespace:=...) or ROS_DOMAIN_ID')

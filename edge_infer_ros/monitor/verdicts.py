"""
What the monitor concludes: levels, per-item statuses, deadline-miss events.

Each verdict is one record, rendered twice: as diagnostic key/values (the node turns them into
``DiagnosticStatus``) and as JSON (the main job's report); both come from the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

from edge_infer_ros.core.health import Level  # the levels of every status of the package
from edge_infer_ros.monitor.windows import WindowSummary

#: Values of ``DeadlineMiss.worst_component``.
SERVICE = 'service'


QUEUE_WAIT = 'queue_wait'


#: When the smaller of a stage's service and queue-wait percentiles is at least
#: this fraction of the larger, the WARN message blames both.
BOTH_CAUSES_RATIO = 0.75


@dataclasses.dataclass(frozen=True)
class DeadlineMiss:
    """
    One frame that ended later than the deadline, and the item most to blame.

    ``worst_stage`` is a stage name, ``'ingest'`` or ``'transport'`` (the sum of
    the hops after ingest); ``worst_component`` says whether that stage's
    ``'service'`` time or its ``'queue_wait'`` was the larger part, and is
    ``'transport'`` for ingest and transport.  ``worst_stage_ms`` is the item's
    time (queue wait + service for a stage); ``worst_stage_budget_ms`` is NaN
    for a stage without a budget.
    """

    camera: str
    seq: int
    stamp_ns: int
    frame_id: str
    deadline_ms: float
    latency_ms: float
    overrun_ms: float
    worst_stage: str
    worst_component: str
    worst_stage_ms: float
    worst_stage_budget_ms: float

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a dict (NaN budget -> None, for strict JSON)."""
        result = dataclasses.asdict(self)
        if math.isnan(self.worst_stage_budget_ms):
            result['worst_stage_budget_ms'] = None
        return result


@dataclasses.dataclass(frozen=True)
class StageStatus:
    """
    One diagnostics verdict: a stage, or a camera's ingest/transport/end_to_end.

    ``name`` is bare (``'detector'``, ``'end_to_end'``); the node adds its own
    prefix and the camera.  ``values`` are (key, value) strings for
    DiagnosticStatus.values: keys carry the unit (``_ms``, ``_s``), numbers are
    formatted with 3 decimals, counts as integers, and ``'nan'`` means no data.
    """

    name: str
    camera: str
    level: Level
    message: str
    values: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def value(self, key: str) -> Optional[str]:
        """Return the value string under ``key``, or None."""
        for k, v in self.values:
            if k == key:
                return v
        return None


def fmt_ms(value: Optional[float]) -> str:
    """Format a number for a diagnostics value (3 decimals, 'nan' for no data)."""
    if value is None:
        return 'nan'
    return f'{value:.3f}'


def json_ms(value: Optional[float]) -> Optional[float]:
    """Return a JSON-safe float (None for NaN or None)."""
    if value is None or math.isnan(value):
        return None
    return float(value)


def percentile_key(q: float) -> str:
    """Format a percentile as in 'p95' or 'p99.9'."""
    return f'p{q:g}'


def worst_item(items: list[tuple[str, str, float, float]]) -> tuple[str, str, float, float]:
    """
    Pick the item most over its budget from (name, component, ms, budget or NaN).

    The largest excess in ms wins (no budget counts as 0: all of that time is
    unplanned); when nothing is over, the largest fraction of its budget.  Ties
    go to the earliest item.
    """
    def excess(item: tuple[str, str, float, float]) -> float:
        budget = item[3]
        return item[2] - (0.0 if math.isnan(budget) else budget)

    def fraction(item: tuple[str, str, float, float]) -> float:
        budget = item[3]
        return -math.inf if math.isnan(budget) else item[2] / budget

    worst = max(items, key=excess)
    if excess(worst) <= 0:
        worst = max(items, key=fraction)
    return worst


def cause_of(q: float, service_q: float, wait_q: float) -> str:
    """Say whether service time, queue wait or both make a stage late."""
    high, low = max(service_q, wait_q), min(service_q, wait_q)
    if low > 0 and low >= BOTH_CAUSES_RATIO * high:
        return (f'both service time ({percentile_key(q)} {service_q:.3f} ms) and queue wait '
                f'({percentile_key(q)} {wait_q:.3f} ms)')
    if service_q >= wait_q:
        return (f'service time ({percentile_key(q)} {service_q:.3f} ms; queue wait '
                f'{wait_q:.3f} ms)')
    return f'queue wait ({percentile_key(q)} {wait_q:.3f} ms; service time {service_q:.3f} ms)'


def budget_ladder(item: str, stale: Optional[str], samples: int, min_samples: int, q: float,
                  value_q: float, budget: Optional[float],
                  why_over: Callable[[], str]) -> tuple[Level, str]:
    """
    Judge one stage or path: STALE, then no budget, too few samples, over (WARN), within.

    The one ladder of every per-item verdict; ``why_over`` adds what an overrun is blamed on.
    """
    if stale is not None:
        return Level.STALE, f'{item}: {stale}'
    if budget is None:
        return Level.OK, f'{item}: no budget configured; {percentile_key(q)} {value_q:.3f} ms'
    if samples < min_samples:
        return Level.OK, f'{item}: {samples} of {min_samples} samples, no verdict yet'
    judged = f'{item} {percentile_key(q)} {value_q:.3f} ms'
    if value_q > budget:
        return Level.WARN, f'{judged} > budget {budget:.3f} ms{why_over()}'
    return Level.OK, f'{judged} <= budget {budget:.3f} ms'


def window_values(summary: WindowSummary, budget: float) -> list[tuple[str, str]]:
    """Return the common diagnostics values of a window."""
    return [
        ('count', str(summary.count)),
        ('budget_ms', fmt_ms(budget)),
        ('p50_ms', fmt_ms(summary.p50)),
        ('p95_ms', fmt_ms(summary.p95)),
        ('p99_ms', fmt_ms(summary.p99)),
        ('max_ms', fmt_ms(summary.max)),
        ('mean_ms', fmt_ms(summary.mean)),
    ]


def window_entry(summary: WindowSummary, budget: float) -> dict[str, Any]:
    """Return the common summary() keys of a window."""
    entry: dict[str, Any] = dict(summary.as_dict())
    entry['budget_ms'] = float(budget)
    return entry


@dataclasses.dataclass(frozen=True)
class Verdict:
    """
    One item's statistics at one instant and the verdict drawn from them.

    The tracker computes each window's summary once into one of these; ``status()`` renders
    it for diagnostics and ``entry()`` for the JSON report, so the two cannot disagree.
    """

    name: str
    camera: str
    level: Level
    message: str
    #: The window judged: a stage's queue wait + service, a path item, end to end.
    window: WindowSummary
    warn_percentile: float
    #: ``window``'s value at ``warn_percentile`` (what is compared with the budget).
    at_warn_percentile_ms: float

    def values(self) -> list[tuple[str, str]]:
        """Return the diagnostics key/values."""
        raise NotImplementedError

    def entry(self) -> dict[str, Any]:
        """Return the JSON report form; None where a window has no data."""
        raise NotImplementedError

    def status(self) -> StageStatus:
        """Return the diagnostics form."""
        return StageStatus(self.name, self.camera, self.level, self.message, self.values())


@dataclasses.dataclass(frozen=True)
class StageVerdict(Verdict):
    """A stage: its queue wait + service (``window``) against its budget, if it has one."""

    budget_ms: Optional[float]
    service: WindowSummary
    queue_wait: WindowSummary
    transport_in: WindowSummary
    over_budget: int
    misses_blamed: int
    last_seen_age_s: float

    def values(self) -> list[tuple[str, str]]:
        """Return the diagnostics key/values: service, queue wait and total separately."""
        total, service, wait = self.window, self.service, self.queue_wait
        return [
            ('count', str(total.count)),
            ('budget_ms', fmt_ms(self.budget_ms)),
            ('service_p50_ms', fmt_ms(service.p50)),
            ('service_p95_ms', fmt_ms(service.p95)),
            ('service_p99_ms', fmt_ms(service.p99)),
            ('service_max_ms', fmt_ms(service.max)),
            ('queue_wait_p50_ms', fmt_ms(wait.p50)),
            ('queue_wait_p95_ms', fmt_ms(wait.p95)),
            ('queue_wait_p99_ms', fmt_ms(wait.p99)),
            ('queue_wait_max_ms', fmt_ms(wait.max)),
            ('total_p95_ms', fmt_ms(total.p95)),
            ('total_p99_ms', fmt_ms(total.p99)),
            ('total_max_ms', fmt_ms(total.max)),
            ('warn_percentile', fmt_ms(self.warn_percentile)),
            ('total_at_warn_percentile_ms', fmt_ms(self.at_warn_percentile_ms)),
            ('transport_in_p95_ms', fmt_ms(self.transport_in.p95)),
            ('over_budget', str(self.over_budget)),
            ('misses', str(self.misses_blamed)),
            ('last_seen_age_s', fmt_ms(self.last_seen_age_s)),
        ]

    def entry(self) -> dict[str, Any]:
        """Return the report entry: service time under the plain keys, the rest prefixed."""
        total, service, wait = self.window, self.service, self.queue_wait
        return {
            'count': service.count,
            'p50_ms': json_ms(service.p50),
            'p95_ms': json_ms(service.p95),
            'p99_ms': json_ms(service.p99),
            'max_ms': json_ms(service.max),
            'mean_ms': json_ms(service.mean),
            'queue_wait_p50_ms': json_ms(wait.p50),
            'queue_wait_p95_ms': json_ms(wait.p95),
            'queue_wait_p99_ms': json_ms(wait.p99),
            'queue_wait_max_ms': json_ms(wait.max),
            'total_p50_ms': json_ms(total.p50),
            'total_p95_ms': json_ms(total.p95),
            'total_p99_ms': json_ms(total.p99),
            'total_max_ms': json_ms(total.max),
            'transport_in_p95_ms': json_ms(self.transport_in.p95),
            'budget_ms': self.budget_ms,
            'over_budget': self.over_budget,
            'deadline_misses_blamed': self.misses_blamed,
            'status': self.level.name,
            'message': self.message,
        }


@dataclasses.dataclass(frozen=True)
class PathVerdict(Verdict):
    """A camera's ingest or transport sum against its budget."""

    budget_ms: float
    over_budget: int
    misses_blamed: int

    def values(self) -> list[tuple[str, str]]:
        """Return the diagnostics key/values."""
        return window_values(self.window, self.budget_ms) + [
            ('warn_percentile', fmt_ms(self.warn_percentile)),
            ('at_warn_percentile_ms', fmt_ms(self.at_warn_percentile_ms)),
            ('over_budget', str(self.over_budget)),
            ('misses', str(self.misses_blamed)),
        ]

    def entry(self) -> dict[str, Any]:
        """Return the report entry."""
        entry = window_entry(self.window, self.budget_ms)
        entry.update({'over_budget': self.over_budget,
                      'deadline_misses_blamed': self.misses_blamed,
                      'status': self.level.name, 'message': self.message})
        return entry


@dataclasses.dataclass(frozen=True)
class EndToEndVerdict(Verdict):
    """A camera's frames against the deadline: the misses in the window and their rate."""

    deadline_ms: float
    misses: int
    miss_rate: float
    miss_rate_error: float
    worst_stage: Optional[str]
    frames_total: int
    misses_total: int
    last_frame_age_s: float

    def values(self) -> list[tuple[str, str]]:
        """Return the diagnostics key/values."""
        return window_values(self.window, self.deadline_ms) + [
            ('deadline_ms', fmt_ms(self.deadline_ms)),
            ('warn_percentile', fmt_ms(self.warn_percentile)),
            ('at_warn_percentile_ms', fmt_ms(self.at_warn_percentile_ms)),
            ('misses', str(self.misses)),
            ('miss_rate', f'{self.miss_rate:.4f}'),
            ('miss_rate_error', f'{self.miss_rate_error:.4f}'),
            ('worst_stage', self.worst_stage or ''),
            ('frames_total', str(self.frames_total)),
            ('misses_total', str(self.misses_total)),
            ('last_frame_age_s', fmt_ms(self.last_frame_age_s)),
        ]

    def entry(self) -> dict[str, Any]:
        """Return the report entry."""
        entry = window_entry(self.window, self.deadline_ms)
        entry.update({'misses': self.misses, 'miss_rate': self.miss_rate,
                      'worst_stage': self.worst_stage, 'status': self.level.name,
                      'message': self.message})
        return entry

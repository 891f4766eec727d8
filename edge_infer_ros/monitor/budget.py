"""
Latency budgets per stage: deadline-miss detection and diagnostics verdicts.

Why a plain module: the budget monitor node, the main job's latency report and
the tests all need the same verdicts, and none of that needs ROS.  The node
only converts: it calls ``BudgetTracker.observe`` for every ``FrameTrace``
(publishing the returned ``DeadlineMiss`` at once), turns ``statuses()`` into
``diagnostic_msgs/DiagnosticStatus`` at the diagnostics rate, and builds its
parameters from ``BudgetConfig.to_mapping()``.

Timing model (see ``edge_infer_ros.core.frame``), per frame and camera::

    stamp --ingest--> [queue_wait | service] stage 1 --hop--> [queue_wait | service] stage 2 ...

* a stage's *total* is ``queue_wait + service`` and is what its budget covers;
* *ingest* is capture stamp -> receipt by the first stage;
* *transport* is the sum of the hops between stages after ingest;
* *end to end* is capture stamp -> end of the last stage, so it is exactly
  ``ingest + sum(stage totals) + transport``, and the deadline is split into
  ``sum(stage budgets) + ingest + transport + slack``.

All latencies are in milliseconds; all times are int nanoseconds.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import numbers
import re
from typing import Any, Iterable, Mapping

from edge_infer_ros.core import frame
from edge_infer_ros.core.frame import FrameTrace, hops
from edge_infer_ros.core.params import flatten_parameters
from edge_infer_ros.core.validate import (CAMERA_NAME_RE, check_name, InputRefused,
                                          MAX_HARDWARE_ID, STAGE_NAME_RE)
from edge_infer_ros.monitor.windows import SlidingWindow, WindowSummary

#: Status names of the per-camera path items (the stages use their own names).
INGEST = 'ingest'
TRANSPORT = 'transport'
END_TO_END = 'end_to_end'
SLACK = 'slack'
#: Names a stage budget may not use: they are path items or the slack.
RESERVED_NAMES = frozenset({INGEST, TRANSPORT, END_TO_END, SLACK})

#: Values of ``DeadlineMiss.worst_component``.
SERVICE = 'service'
QUEUE_WAIT = 'queue_wait'

#: When the smaller of a stage's service and queue-wait percentiles is at least
#: this fraction of the larger, the WARN message blames both.
BOTH_CAUSES_RATIO = 0.75

#: Prefix of the stage budgets in the flat (ROS parameter) mapping.
BUDGET_PREFIX = 'budget_ms.'

DEFAULT_STAGE_BUDGETS_MS: dict[str, float] = {
    'preprocess': 4.0,
    'detector': 14.0,
    'nms': 5.0,
    'action': 6.0,
}

_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


class Level(enum.IntEnum):
    """Status levels, numerically equal to diagnostic_msgs/DiagnosticStatus's."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3

    def as_byte(self) -> bytes:
        """Return the level as rclpy's ``byte`` field of DiagnosticStatus wants it."""
        return bytes((int(self),))


def _is_number(value: Any) -> bool:
    """Return True for real numbers, False for bools (a common YAML slip)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    """Return True for finite real numbers (not bools)."""
    return _is_number(value) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    """Return True for integral numbers (1 and 1.0), not bools."""
    return _is_finite(value) and int(value) == value


@dataclasses.dataclass
class BudgetConfig:
    """
    Budgets and thresholds of the budget monitor (ms unless the name says s).

    ``window_max_age_s`` 0 disables the age limit of the windows.  A stage seen
    in traces but absent from ``stage_budgets_ms`` is measured and reported,
    but has no budget: it never WARNs, and when it causes a deadline miss it is
    ranked as if its budget were 0 (all of its time is unplanned).
    """

    stage_budgets_ms: dict[str, float] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_STAGE_BUDGETS_MS))
    ingest_ms: float = 6.0
    transport_ms: float = 5.0
    slack_ms: float = 5.0
    deadline_ms: float = 45.0
    window_size: int = 300
    window_max_age_s: float = 10.0
    warn_percentile: float = 95.0
    miss_rate_error: float = 0.05
    stale_timeout_s: float = 1.0
    min_samples: int = 5
    diagnostics_period_s: float = 1.0
    hardware_id: str = 'edge_infer_ros'
    #: Bounds of the tracker's state (traces with ever-new names must not grow it).
    max_cameras: int = 16
    max_stages: int = 16
    entry_timeout_s: float = 30.0

    def problems(self) -> list[str]:
        """Return every reason the configuration is invalid (empty when valid)."""
        problems: list[str] = []

        def positive(name: str, value: Any) -> None:
            if not _is_finite(value) or value <= 0:
                problems.append(f'{name} must be a finite number > 0, got {value!r}')

        positive('deadline_ms', self.deadline_ms)
        positive('budget_ms.ingest', self.ingest_ms)
        positive('budget_ms.transport', self.transport_ms)
        if not _is_finite(self.slack_ms) or self.slack_ms < 0:
            problems.append(f'budget_ms.slack must be a finite number >= 0, got {self.slack_ms!r}')
        if not isinstance(self.stage_budgets_ms, Mapping):
            problems.append('stage_budgets_ms must be a mapping of stage name to ms, '
                            f'got {type(self.stage_budgets_ms).__name__}')
        else:
            for stage, budget in self.stage_budgets_ms.items():
                if not isinstance(stage, str) or not _NAME_RE.match(stage):
                    problems.append(f'stage name {stage!r} is not a valid parameter name '
                                    '(letters, digits, underscores; not starting with a digit)')
                elif stage in RESERVED_NAMES:
                    problems.append(f'stage name {stage!r} is reserved '
                                    f'({", ".join(sorted(RESERVED_NAMES))})')
                positive(f'budget_ms.{stage}', budget)
        if not _is_int(self.window_size) or self.window_size < 1:
            problems.append(f'window_size must be an integer >= 1, got {self.window_size!r}')
        if not _is_finite(self.window_max_age_s) or self.window_max_age_s < 0:
            problems.append('window_max_age_s must be a finite number >= 0 (0: no age limit), '
                            f'got {self.window_max_age_s!r}')
        if not _is_finite(self.warn_percentile) or not 0 < self.warn_percentile <= 100:
            problems.append(f'warn_percentile must be in (0, 100], got {self.warn_percentile!r}')
        if not _is_finite(self.miss_rate_error) or not 0 <= self.miss_rate_error <= 1:
            problems.append(f'miss_rate_error must be a fraction in [0, 1], '
                            f'got {self.miss_rate_error!r}')
        positive('stale_timeout_s', self.stale_timeout_s)
        if not _is_int(self.min_samples) or self.min_samples < 0:
            problems.append(f'min_samples must be an integer >= 0, got {self.min_samples!r}')
        elif _is_int(self.window_size) and self.min_samples > self.window_size:
            problems.append(f'min_samples ({self.min_samples}) > window_size '
                            f'({self.window_size}): percentiles could never warn')
        positive('diagnostics_period_s', self.diagnostics_period_s)
        if not isinstance(self.hardware_id, str):
            problems.append(f'hardware_id must be a string, got {self.hardware_id!r}')
        elif len(self.hardware_id) > MAX_HARDWARE_ID:
            problems.append(f'hardware_id has {len(self.hardware_id)} characters, at most '
                            f'{MAX_HARDWARE_ID}')
        problems.extend(_bound_problems(self))
        return problems

    def validate(self) -> 'BudgetConfig':
        """Raise ValueError naming every invalid field; return self when valid."""
        problems = self.problems()
        if problems:
            raise ValueError('invalid budget configuration: ' + '; '.join(problems))
        return self

    def consistency_warnings(self) -> list[str]:
        """
        Return warnings about a valid but doubtful configuration.

        Chiefly: the budgets should add up to the deadline, otherwise either a
        frame can miss the deadline with every item within budget, or part of
        the deadline is allocated to nothing.
        """
        warnings: list[str] = []
        stages = sum(self.stage_budgets_ms.values())
        total = stages + self.ingest_ms + self.transport_ms + self.slack_ms
        if not math.isclose(total, self.deadline_ms, rel_tol=1e-9, abs_tol=1e-6):
            detail = (f'budgets sum to {total:.3f} ms (stages {stages:.3f} + ingest '
                      f'{self.ingest_ms:.3f} + transport {self.transport_ms:.3f} + slack '
                      f'{self.slack_ms:.3f}) but deadline_ms is {self.deadline_ms:.3f} ms')
            if total > self.deadline_ms:
                warnings.append(detail + ': the deadline can be missed with every stage '
                                'within budget')
            else:
                warnings.append(detail + f': {self.deadline_ms - total:.3f} ms of the deadline '
                                'is budgeted to nothing (add it to the slack?)')
        if 0 < self.window_max_age_s < self.stale_timeout_s:
            warnings.append(f'window_max_age_s ({self.window_max_age_s} s) < stale_timeout_s '
                            f'({self.stale_timeout_s} s): windows empty before the stages '
                            'are reported STALE')
        if 0 < self.miss_rate_error and self.window_size * self.miss_rate_error < 1:
            warnings.append(f'window_size * miss_rate_error = '
                            f'{self.window_size * self.miss_rate_error:.3f} < 1: a single '
                            'deadline miss in the window is an ERROR')
        return warnings

    def to_mapping(self) -> dict[str, Any]:
        """Return the flat mapping of ROS parameter names (the node declares these)."""
        mapping: dict[str, Any] = {
            'deadline_ms': float(self.deadline_ms),
            BUDGET_PREFIX + INGEST: float(self.ingest_ms),
            BUDGET_PREFIX + TRANSPORT: float(self.transport_ms),
        }
        for stage, budget in self.stage_budgets_ms.items():
            mapping[BUDGET_PREFIX + stage] = float(budget)
        mapping[BUDGET_PREFIX + SLACK] = float(self.slack_ms)
        mapping.update({
            'window_size': int(self.window_size),
            'window_max_age_s': float(self.window_max_age_s),
            'warn_percentile': float(self.warn_percentile),
            'miss_rate_error': float(self.miss_rate_error),
            'stale_timeout_s': float(self.stale_timeout_s),
            'min_samples': int(self.min_samples),
            'diagnostics_period_s': float(self.diagnostics_period_s),
            'hardware_id': str(self.hardware_id),
            'max_cameras': int(self.max_cameras),
            'max_stages': int(self.max_stages),
            'entry_timeout_s': float(self.entry_timeout_s),
        })
        return mapping

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], base: 'BudgetConfig | None' = None,
                     strict: bool = False) -> 'BudgetConfig':
        """
        Build a validated config from ROS parameters (flat or nested names).

        Accepts ``{'budget_ms.detector': 14.0}`` as well as the nested
        ``{'budget_ms': {'detector': 14.0}}`` of a YAML file, and a
        ``{'ros__parameters': {...}}`` (or ``{node: {'ros__parameters': ...}}``)
        wrapper.  Keys not given keep the value of ``base`` (default: the
        defaults), except that when ``base`` is None and the mapping names any
        stage budget, the stage budgets are exactly the ones named (a YAML file
        describes the whole pipeline).  With ``base``, named stage budgets are
        added to or replace base's.  Unknown keys are ignored, or with
        ``strict`` raise ValueError.  Raises ValueError on any invalid value.
        """
        flat = flatten_parameters(_unwrap(mapping))
        config = cls() if base is None else dataclasses.replace(
            base, stage_budgets_ms=dict(base.stage_budgets_ms))
        stages: dict[str, float] = {}
        unknown: list[str] = []
        for key, value in flat.items():
            if key.startswith(BUDGET_PREFIX):
                name = key[len(BUDGET_PREFIX):]
                number = _number(key, value)
                if name == INGEST:
                    config.ingest_ms = number
                elif name == TRANSPORT:
                    config.transport_ms = number
                elif name == SLACK:
                    config.slack_ms = number
                else:
                    stages[name] = number
            elif key in _FLOAT_KEYS:
                setattr(config, key, _number(key, value))
            elif key in _INT_KEYS:
                setattr(config, key, _integer(key, value))
            elif key == 'hardware_id':
                if not isinstance(value, str):
                    raise ValueError(f'hardware_id must be a string, got {value!r}')
                config.hardware_id = value
            else:
                unknown.append(key)
        if unknown and strict:
            raise ValueError('unknown budget parameters: ' + ', '.join(sorted(unknown)))
        if stages:
            if base is None:
                config.stage_budgets_ms = stages
            else:
                config.stage_budgets_ms.update(stages)
        return config.validate()


_FLOAT_KEYS = frozenset({'deadline_ms', 'window_max_age_s', 'warn_percentile',
                         'miss_rate_error', 'stale_timeout_s', 'diagnostics_period_s',
                         'entry_timeout_s'})
_INT_KEYS = frozenset({'window_size', 'min_samples', 'max_cameras', 'max_stages'})

#: Ranges of the state bounds (also the ROS parameters' ranges).
MAX_CAMERAS_RANGE = (1, 256)
MAX_STAGES_RANGE = (1, 64)


def _bound_problems(config: BudgetConfig) -> list[str]:
    """Return why the state bounds of a config are invalid."""
    problems = []
    for name, (low, high) in (('max_cameras', MAX_CAMERAS_RANGE),
                              ('max_stages', MAX_STAGES_RANGE)):
        value = getattr(config, name)
        if not _is_int(value) or not low <= value <= high:
            problems.append(f'{name} must be an integer in [{low}, {high}], got {value!r}')
    timeout = config.entry_timeout_s
    if not _is_finite(timeout) or (_is_finite(config.stale_timeout_s) and
                                   timeout < config.stale_timeout_s):
        problems.append(f'entry_timeout_s must be a finite number >= stale_timeout_s '
                        f'({config.stale_timeout_s!r}), got {timeout!r}')
    return problems


def _unwrap(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """Strip a ``node: ros__parameters:`` wrapper, if there is one."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f'expected a mapping of parameters, got {type(mapping).__name__}')
    if 'ros__parameters' in mapping:
        return dict(mapping['ros__parameters'])
    if len(mapping) == 1:
        (inner,) = mapping.values()
        if isinstance(inner, Mapping) and 'ros__parameters' in inner:
            return dict(inner['ros__parameters'])
    return mapping


def _number(key: str, value: Any) -> float:
    """Return a parameter value as float, or raise naming the parameter."""
    if not _is_number(value):
        raise ValueError(f'{key} must be a number, got {value!r}')
    return float(value)


def _integer(key: str, value: Any) -> int:
    """Return a parameter value as int (1.0 accepted), or raise naming the parameter."""
    if not _is_int(value):
        raise ValueError(f'{key} must be an integer, got {value!r}')
    return int(value)


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

    def describe(self) -> str:
        """Return a one-line human description (for logs)."""
        budget = ('no budget' if math.isnan(self.worst_stage_budget_ms)
                  else f'budget {self.worst_stage_budget_ms:.3f} ms')
        return (f'{self.camera} frame {self.seq}: {self.latency_ms:.3f} ms > deadline '
                f'{self.deadline_ms:.3f} ms (+{self.overrun_ms:.3f} ms); worst: '
                f'{self.worst_stage} {self.worst_component} {self.worst_stage_ms:.3f} ms '
                f'({budget})')

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

    def value(self, key: str) -> str | None:
        """Return the value string under ``key``, or None."""
        for k, v in self.values:
            if k == key:
                return v
        return None


def _fmt(value: float | None) -> str:
    """Format a number for a diagnostics value (3 decimals, 'nan' for no data)."""
    if value is None:
        return 'nan'
    return f'{value:.3f}'


def _json(value: float | None) -> float | None:
    """Return a JSON-safe float (None for NaN or None)."""
    if value is None or math.isnan(value):
        return None
    return float(value)


def _q(q: float) -> str:
    """Format a percentile as in 'p95' or 'p99.9'."""
    return f'p{q:g}'


class _StageState:
    """The windows of one (camera, stage)."""

    __slots__ = ('service', 'queue_wait', 'total', 'transport', 'last_ns')

    def __init__(self, size: int, max_age_s: float | None, now_ns: int) -> None:
        self.service = SlidingWindow(size, max_age_s)
        self.queue_wait = SlidingWindow(size, max_age_s)
        self.total = SlidingWindow(size, max_age_s)
        self.transport = SlidingWindow(size, max_age_s)
        self.last_ns = now_ns

    def windows(self) -> tuple[SlidingWindow, ...]:
        return (self.service, self.queue_wait, self.total, self.transport)


class _CameraState:
    """The windows and counters of one camera."""

    __slots__ = ('stages', 'ingest', 'transport', 'end_to_end', 'last_ns', 'frames',
                 'misses', 'blamed', 'recent_misses')

    def __init__(self, size: int, max_age_s: float | None, now_ns: int) -> None:
        self.stages: dict[str, _StageState] = {}
        self.ingest = SlidingWindow(size, max_age_s)
        self.transport = SlidingWindow(size, max_age_s)
        self.end_to_end = SlidingWindow(size, max_age_s)
        self.last_ns = now_ns
        self.frames = 0
        self.misses = 0
        #: Cumulative count of deadline misses blamed on each item.
        self.blamed: collections.Counter[str] = collections.Counter()
        #: (time, worst item) of the latest misses, to name the worst in the window.
        self.recent_misses: collections.deque[tuple[int, str]] = collections.deque(maxlen=size)

    def windows(self) -> tuple[SlidingWindow, ...]:
        result = [self.ingest, self.transport, self.end_to_end]
        for state in self.stages.values():
            result.extend(state.windows())
        return tuple(result)


class BudgetTracker:
    """
    Keeps the latency windows of every (camera, stage) and judges them.

    ``observe`` is called for every trace (cheap: a few ring-buffer writes per
    stage); ``statuses`` and ``summary`` compute percentiles and are meant for
    the diagnostics rate.  Times default to ``edge_infer_ros.core.frame.now_ns()``.
    Not thread-safe: call it from one thread (one callback group).
    """

    def __init__(self, config: BudgetConfig | None = None) -> None:
        """Start with no cameras; ``config`` defaults to ``BudgetConfig()``."""
        self._config = _own_copy(BudgetConfig() if config is None else config.validate())
        self._deadline_ms = float(self._config.deadline_ms)
        self._cameras: dict[str, _CameraState] = {}

    @property
    def config(self) -> BudgetConfig:
        """Return the configuration in force (do not mutate it: use set_config)."""
        return self._config

    def cameras(self) -> list[str]:
        """Return the cameras seen, in order of first trace."""
        return list(self._cameras)

    def _max_age_s(self) -> float | None:
        return self._config.window_max_age_s or None

    def set_config(self, config: BudgetConfig) -> None:
        """
        Apply a new configuration; raises ValueError (keeping the old one) if invalid.

        Budgets and thresholds apply from the next observe/statuses; a new
        window size resizes every window keeping the newest samples.
        """
        config = _own_copy(config.validate())
        old = self._config
        self._config = config
        self._deadline_ms = float(config.deadline_ms)
        size = int(config.window_size)
        max_age = self._max_age_s()
        if size != old.window_size or config.window_max_age_s != old.window_max_age_s:
            for camera in self._cameras.values():
                for window in camera.windows():
                    window.resize(size)
                    window.max_age_s = max_age
                camera.recent_misses = collections.deque(camera.recent_misses, maxlen=size)

    def observe(self, trace: FrameTrace, now_ns: int | None = None) -> DeadlineMiss | None:
        """
        Record one frame's trace; return a DeadlineMiss if it ended after the deadline.

        ``now_ns`` is the receipt time, used to age samples and detect stale
        streams.  A trace without stages carries no timing and is ignored.
        """
        stages = trace.stages
        if not stages:
            return None
        if now_ns is None:
            now_ns = frame.now_ns()
        camera = self._admit(trace, now_ns)
        states = camera.stages
        hops_ms = 0.0
        ingest_ms: float | None = None
        for timing, hop_ns in hops(trace.stamp_ns, stages):
            state = states.get(timing.stage)
            if state is None:
                state = states[timing.stage] = _StageState(
                    self._config.window_size, self._max_age_s(), now_ns)
            hop_ms = hop_ns / 1e6
            wait_ms = timing.queue_wait_ns / 1e6
            service_ms = timing.service_ns / 1e6
            state.service.add(service_ms, now_ns)
            state.queue_wait.add(wait_ms, now_ns)
            state.total.add(wait_ms + service_ms, now_ns)
            state.transport.add(hop_ms, now_ns)
            state.last_ns = now_ns
            if ingest_ms is None:
                ingest_ms = hop_ms
            else:
                hops_ms += hop_ms
        latency_ms = (stages[-1].end_ns - trace.stamp_ns) / 1e6
        ingest_ms = ingest_ms if ingest_ms is not None else 0.0  # a trace has >= 1 stage
        camera.ingest.add(ingest_ms, now_ns)
        camera.transport.add(hops_ms, now_ns)
        camera.end_to_end.add(latency_ms, now_ns)
        camera.last_ns = now_ns
        camera.frames += 1
        if latency_ms <= self._deadline_ms:
            return None
        miss = self._blame(trace, latency_ms, ingest_ms, hops_ms)
        camera.misses += 1
        camera.blamed[miss.worst_stage] += 1
        camera.recent_misses.append((now_ns, miss.worst_stage))
        return miss

    def _admit(self, trace: FrameTrace, now_ns: int) -> '_CameraState':
        """
        Return the state of the trace's camera, creating it (and its stages) within bounds.

        Raises InputRefused, changing nothing, for an invalid camera or stage name, or when
        the trace would need more than max_cameras cameras or max_stages stages. At the
        bound, the camera (or stage) silent the longest makes room when it has been silent
        longer than stale_timeout_s: a live camera is never pushed out by new names.
        """
        config = self._config
        camera = self._cameras.get(trace.camera)
        if camera is None:
            check_name(trace.camera, 'camera name', CAMERA_NAME_RE)
        new_stages = [t.stage for t in trace.stages
                      if camera is None or t.stage not in camera.stages]
        for stage in new_stages:
            check_name(stage, 'stage name', STAGE_NAME_RE)
        stale_ns = now_ns - config.stale_timeout_s * 1e9
        if new_stages:
            known = len(camera.stages) if camera is not None else 0
            room = config.max_stages - known
            if len(set(new_stages)) > room and camera is not None:
                room += _evict(camera.stages, stale_ns, len(set(new_stages)) - room)
            if len(set(new_stages)) > room:
                raise InputRefused('too_many', f'trace of camera {trace.camera!r} would need '
                                   f'{known + len(set(new_stages))} stages, max_stages is '
                                   f'{config.max_stages}')
        if camera is None:
            if len(self._cameras) >= config.max_cameras and \
                    not _evict(self._cameras, stale_ns, 1):
                raise InputRefused('too_many', f'camera {trace.camera!r} would be camera '
                                   f'{len(self._cameras) + 1}, max_cameras is '
                                   f'{config.max_cameras} and none is stale')
            camera = self._cameras[trace.camera] = _CameraState(
                config.window_size, self._max_age_s(), now_ns)
        return camera

    def expire(self, now_ns: int) -> int:
        """Forget cameras and stages silent for entry_timeout_s; return how many went."""
        before_ns = now_ns - self._config.entry_timeout_s * 1e9
        gone = [name for name, camera in self._cameras.items() if camera.last_ns < before_ns]
        for name in gone:
            del self._cameras[name]
        count = len(gone)
        for camera in self._cameras.values():
            stages = [s for s, state in camera.stages.items() if state.last_ns < before_ns]
            for stage in stages:
                del camera.stages[stage]
            count += len(stages)
        return count

    def _blame(self, trace: FrameTrace, latency_ms: float, ingest_ms: float,
               transport_ms: float) -> DeadlineMiss:
        """Name the item most over its own budget, for the miss event (see _worst)."""
        config = self._config
        # (name, component, time, budget or NaN), in pipeline order.
        items: list[tuple[str, str, float, float]] = [
            (INGEST, TRANSPORT, ingest_ms, config.ingest_ms)]
        for timing in trace.stages:
            wait_ms = timing.queue_wait_ns / 1e6
            service_ms = timing.service_ns / 1e6
            budget = config.stage_budgets_ms.get(timing.stage)
            items.append((timing.stage, SERVICE if service_ms >= wait_ms else QUEUE_WAIT,
                          wait_ms + service_ms, math.nan if budget is None else budget))
        items.append((TRANSPORT, TRANSPORT, transport_ms, config.transport_ms))
        worst = _worst(items)
        deadline = self._deadline_ms
        return DeadlineMiss(trace.camera, trace.seq, trace.stamp_ns, trace.frame_id,
                            deadline, latency_ms, latency_ms - deadline,
                            worst[0], worst[1], worst[2], worst[3])

    # ----------------------------------------------------------------- verdicts

    def statuses(self, now_ns: int | None = None) -> list[StageStatus]:
        """
        Judge every (camera, stage) and each camera's ingest, transport, end_to_end.

        Order: per camera (first seen first), its stages in pipeline order,
        then ingest, transport and end_to_end.  (A stage that calls itself
        'ingest', 'transport' or 'end_to_end' in its traces would share a name
        with a path item: stage nodes should not.)
        """
        return [status for status, _ in self._judge(now_ns)]

    def _judge(self, now_ns: int | None) -> list[tuple[StageStatus, dict[str, Any]]]:
        """Return (status, summary entry) for every item, in statuses() order."""
        if now_ns is None:
            now_ns = frame.now_ns()
        self.expire(now_ns)
        results = []
        for name, camera in self._cameras.items():
            for stage, state in camera.stages.items():
                results.append(self._stage_verdict(name, camera, stage, state, now_ns))
            for item in (INGEST, TRANSPORT):
                results.append(self._path_verdict(name, camera, item, now_ns))
            results.append(self._end_to_end_verdict(name, camera, now_ns))
        return results

    def _stale_message(self, camera: _CameraState, last_ns: int, now_ns: int
                       ) -> str | None:
        """Return why an item is stale at ``now_ns``, or None when it is live."""
        timeout_ns = self._config.stale_timeout_s * 1e9
        silent_ns = now_ns - camera.last_ns
        if silent_ns > timeout_ns:
            return f'no frames for {silent_ns / 1e9:.1f} s'
        if now_ns - last_ns > timeout_ns:
            return (f'missing from the traces for {(now_ns - last_ns) / 1e9:.1f} s '
                    'while frames still arrive (stage down or bypassed?)')
        return None

    def _stage_verdict(self, camera_name: str, camera: _CameraState, stage: str,
                       state: _StageState, now_ns: int
                       ) -> tuple[StageStatus, dict[str, Any]]:
        config = self._config
        q = float(config.warn_percentile)
        service = state.service.summary(now_ns)
        wait = state.queue_wait.summary(now_ns)
        total = state.total.summary(now_ns)
        hop = state.transport.summary(now_ns)
        service_q = service.percentile(q)
        wait_q = wait.percentile(q)
        total_q = total.percentile(q)
        budget = config.stage_budgets_ms.get(stage)
        over = total.count_above(budget) if budget is not None else 0
        stale = self._stale_message(camera, state.last_ns, now_ns)
        if stale is not None:
            level, message = Level.STALE, f'{stage}: {stale}'
        elif budget is None:
            level = Level.OK
            message = f'{stage}: no budget configured; {_q(q)} {total_q:.3f} ms'
        elif total.count < config.min_samples:
            level = Level.OK
            message = (f'{stage}: {total.count} of {config.min_samples} samples, '
                       'no verdict yet')
        elif total_q > budget:
            level = Level.WARN
            message = (f'{stage} {_q(q)} {total_q:.3f} ms > budget {budget:.3f} ms, cause: '
                       + _cause(q, service_q, wait_q))
        else:
            level = Level.OK
            message = f'{stage} {_q(q)} {total_q:.3f} ms <= budget {budget:.3f} ms'
        total_p95, total_p99 = total.percentiles((95.0, 99.0))
        values = [
            ('count', str(total.count)),
            ('budget_ms', _fmt(budget)),
            ('service_p50_ms', _fmt(service.p50)),
            ('service_p95_ms', _fmt(service.p95)),
            ('service_p99_ms', _fmt(service.p99)),
            ('service_max_ms', _fmt(service.max)),
            ('queue_wait_p50_ms', _fmt(wait.p50)),
            ('queue_wait_p95_ms', _fmt(wait.p95)),
            ('queue_wait_p99_ms', _fmt(wait.p99)),
            ('queue_wait_max_ms', _fmt(wait.max)),
            ('total_p95_ms', _fmt(total_p95)),
            ('total_p99_ms', _fmt(total_p99)),
            ('total_max_ms', _fmt(total.max)),
            ('warn_percentile', _fmt(q)),
            ('total_at_warn_percentile_ms', _fmt(total_q)),
            ('transport_in_p95_ms', _fmt(hop.p95)),
            ('over_budget', str(over)),
            ('misses', str(camera.blamed.get(stage, 0))),
            ('last_seen_age_s', _fmt((now_ns - state.last_ns) / 1e9)),
        ]
        status = StageStatus(stage, camera_name, level, message, values)
        entry = {
            'count': service.count,
            'p50_ms': _json(service.p50),
            'p95_ms': _json(service.p95),
            'p99_ms': _json(service.p99),
            'max_ms': _json(service.max),
            'mean_ms': _json(service.mean),
            'queue_wait_p50_ms': _json(wait.p50),
            'queue_wait_p95_ms': _json(wait.p95),
            'queue_wait_p99_ms': _json(wait.p99),
            'queue_wait_max_ms': _json(wait.max),
            'total_p50_ms': _json(total.p50),
            'total_p95_ms': _json(total.p95),
            'total_p99_ms': _json(total.p99),
            'total_max_ms': _json(total.max),
            'transport_in_p95_ms': _json(hop.p95),
            'budget_ms': budget,
            'over_budget': over,
            'deadline_misses_blamed': camera.blamed.get(stage, 0),
            'status': level.name,
            'message': message,
        }
        return status, entry

    def _path_verdict(self, camera_name: str, camera: _CameraState, item: str, now_ns: int
                      ) -> tuple[StageStatus, dict[str, Any]]:
        """Judge a camera's ingest or transport sum against its budget."""
        config = self._config
        q = float(config.warn_percentile)
        if item == INGEST:
            window, budget = camera.ingest, float(config.ingest_ms)
            what = 'capture stamp to first-stage receipt'
        else:
            window, budget = camera.transport, float(config.transport_ms)
            what = 'sum of the hops between stages'
        summary = window.summary(now_ns)
        value_q = summary.percentile(q)
        over = summary.count_above(budget)
        stale = self._stale_message(camera, camera.last_ns, now_ns)
        if stale is not None:
            level, message = Level.STALE, f'{item}: {stale}'
        elif summary.count < config.min_samples:
            level = Level.OK
            message = (f'{item}: {summary.count} of {config.min_samples} samples, '
                       'no verdict yet')
        elif value_q > budget:
            level = Level.WARN
            message = (f'{item} {_q(q)} {value_q:.3f} ms > budget {budget:.3f} ms '
                       f'({what})')
        else:
            level = Level.OK
            message = f'{item} {_q(q)} {value_q:.3f} ms <= budget {budget:.3f} ms'
        values = _window_values(summary, budget) + [
            ('warn_percentile', _fmt(q)),
            ('at_warn_percentile_ms', _fmt(value_q)),
            ('over_budget', str(over)),
            ('misses', str(camera.blamed.get(item, 0))),
        ]
        entry = _window_entry(summary, budget)
        entry.update({'over_budget': over,
                      'deadline_misses_blamed': camera.blamed.get(item, 0),
                      'status': level.name, 'message': message})
        return StageStatus(item, camera_name, level, message, values), entry

    def _end_to_end_verdict(self, camera_name: str, camera: _CameraState, now_ns: int
                            ) -> tuple[StageStatus, dict[str, Any]]:
        """
        Judge a camera's deadline misses in the window.

        WARN on any miss; ERROR when the miss rate exceeds miss_rate_error and
        the window holds at least min_samples frames (one slow first frame of
        a fresh start is a WARN, not an ERROR); ERROR when no frames arrive.
        """
        config = self._config
        q = float(config.warn_percentile)
        deadline = self._deadline_ms
        summary = camera.end_to_end.summary(now_ns)
        value_q = summary.percentile(q)
        misses = summary.count_above(deadline)
        rate = misses / summary.count if summary.count else 0.0
        worst = self._worst_in_window(camera, now_ns) if misses else None
        timeout_ns = config.stale_timeout_s * 1e9
        silent_ns = now_ns - camera.last_ns
        if silent_ns > timeout_ns:
            level, message = Level.ERROR, f'no frames for {silent_ns / 1e9:.1f} s'
        elif misses == 0:
            level = Level.OK
            message = (f'{_q(q)} {value_q:.3f} ms, no deadline misses in '
                       f'{summary.count} frames (deadline {deadline:.3f} ms)')
        else:
            error = rate > config.miss_rate_error and summary.count >= config.min_samples
            level = Level.ERROR if error else Level.WARN
            message = (f'{misses} of {summary.count} frames missed the {deadline:.3f} ms '
                       f'deadline ({rate:.1%} {">" if rate > config.miss_rate_error else "<="}'
                       f' {config.miss_rate_error:.1%}); worst stage: {worst}')
        values = _window_values(summary, deadline) + [
            ('deadline_ms', _fmt(deadline)),
            ('warn_percentile', _fmt(q)),
            ('at_warn_percentile_ms', _fmt(value_q)),
            ('misses', str(misses)),
            ('miss_rate', f'{rate:.4f}'),
            ('miss_rate_error', f'{config.miss_rate_error:.4f}'),
            ('worst_stage', worst or ''),
            ('frames_total', str(camera.frames)),
            ('misses_total', str(camera.misses)),
            ('last_frame_age_s', _fmt(silent_ns / 1e9)),
        ]
        entry = _window_entry(summary, deadline)
        entry.update({'misses': misses, 'miss_rate': rate, 'worst_stage': worst,
                      'status': level.name, 'message': message})
        return StageStatus(END_TO_END, camera_name, level, message, values), entry

    def _worst_in_window(self, camera: _CameraState, now_ns: int) -> str:
        """
        Name the item blamed most among the window's misses.

        Falls back to ranking the items' warn percentiles against their budgets
        like a single miss (e.g. after a lower deadline made old frames count as
        misses that raised no event).
        """
        oldest = camera.end_to_end.oldest_time_ns(now_ns)
        blamed = collections.Counter(stage for t, stage in camera.recent_misses
                                     if oldest is not None and t >= oldest)
        if blamed:
            stage, count = blamed.most_common(1)[0]
            return f'{stage} ({count} of {sum(blamed.values())} misses)'
        config = self._config
        q = float(config.warn_percentile)
        items: list[tuple[str, str, float, float]] = [
            (INGEST, TRANSPORT, camera.ingest.summary(now_ns).percentile(q), config.ingest_ms)]
        for stage, state in camera.stages.items():
            budget = config.stage_budgets_ms.get(stage)
            items.append((stage, '', state.total.summary(now_ns).percentile(q),
                          math.nan if budget is None else budget))
        items.append((TRANSPORT, TRANSPORT, camera.transport.summary(now_ns).percentile(q),
                      config.transport_ms))
        items = [item for item in items if not math.isnan(item[2])]
        if not items:
            return 'unknown'
        stage, _, value, budget = _worst(items)
        return f'{stage} ({_q(q)} {value:.3f} ms vs budget {_fmt(budget)} ms)'

    # ------------------------------------------------------------------ reports

    def summary(self, now_ns: int | None = None) -> dict[str, Any]:
        """
        Return the JSON-ready latency report (None where a window has no data).

        Per camera: ``frames`` and ``deadline_misses`` (since start), per stage
        the service-time statistics (count, p50_ms, p95_ms, p99_ms, max_ms)
        with the queue wait separately (queue_wait_p50_ms, queue_wait_p99_ms)
        and the budget (which covers queue wait + service, see total_*_ms), and
        ``ingest``, ``transport`` and ``end_to_end`` entries with the same
        statistics keys (their budget_ms; the deadline for end_to_end).
        """
        if now_ns is None:
            now_ns = frame.now_ns()
        judged = iter(self._judge(now_ns))
        cameras: dict[str, Any] = {}
        for name, camera in self._cameras.items():
            stages = {stage: next(judged)[1] for stage in camera.stages}
            report: dict[str, Any] = {
                'frames': camera.frames,
                'deadline_misses': camera.misses,
                'miss_rate': camera.misses / camera.frames if camera.frames else 0.0,
                'stages': stages,
            }
            for item in (INGEST, TRANSPORT, END_TO_END):
                report[item] = next(judged)[1]
            cameras[name] = report
        return {
            'now_ns': int(now_ns),
            'deadline_ms': self._deadline_ms,
            'warn_percentile': float(self._config.warn_percentile),
            'config': self._config.to_mapping(),
            'cameras': cameras,
        }


def _evict(entries: dict[str, Any], stale_before_ns: float, wanted: int) -> int:
    """Remove up to ``wanted`` entries silent since before ``stale_before_ns``, oldest first."""
    stale = sorted((state.last_ns, name) for name, state in entries.items()
                   if state.last_ns < stale_before_ns)[:wanted]
    for _, name in stale:
        del entries[name]
    return len(stale)


def _own_copy(config: BudgetConfig) -> BudgetConfig:
    """Copy a config so later changes by the caller cannot bypass set_config."""
    return dataclasses.replace(config, stage_budgets_ms=dict(config.stage_budgets_ms))


def _worst(items: list[tuple[str, str, float, float]]) -> tuple[str, str, float, float]:
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


def _cause(q: float, service_q: float, wait_q: float) -> str:
    """Say whether service time, queue wait or both make a stage late."""
    high, low = max(service_q, wait_q), min(service_q, wait_q)
    if low > 0 and low >= BOTH_CAUSES_RATIO * high:
        return (f'both service time ({_q(q)} {service_q:.3f} ms) and queue wait '
                f'({_q(q)} {wait_q:.3f} ms)')
    if service_q >= wait_q:
        return (f'service time ({_q(q)} {service_q:.3f} ms; queue wait '
                f'{wait_q:.3f} ms)')
    return f'queue wait ({_q(q)} {wait_q:.3f} ms; service time {service_q:.3f} ms)'


def _window_values(summary: WindowSummary, budget: float) -> list[tuple[str, str]]:
    """Return the common diagnostics values of a window."""
    return [
        ('count', str(summary.count)),
        ('budget_ms', _fmt(budget)),
        ('p50_ms', _fmt(summary.p50)),
        ('p95_ms', _fmt(summary.p95)),
        ('p99_ms', _fmt(summary.p99)),
        ('max_ms', _fmt(summary.max)),
        ('mean_ms', _fmt(summary.mean)),
    ]


def _window_entry(summary: WindowSummary, budget: float) -> dict[str, Any]:
    """Return the common summary() keys of a window."""
    entry: dict[str, Any] = dict(summary.as_dict())
    entry['budget_ms'] = float(budget)
    return entry


_TABLE_COLUMNS = (('stage', 14, '<'), ('count', 7, '>'), ('p50', 9, '>'), ('p95', 9, '>'),
                  ('p99', 9, '>'), ('max', 9, '>'), ('qwait p50', 10, '>'),
                  ('qwait p99', 10, '>'), ('budget', 9, '>'), ('status', 8, '>'))


def _cell(value: Any) -> str:
    """Format one numeric cell; '-' for no data or not applicable."""
    if value is None:
        return '-'
    if isinstance(value, float):
        return '-' if math.isnan(value) else f'{value:.3f}'
    return str(value)


def _row(cells: Iterable[Any]) -> str:
    """Lay out one table row with the fixed column widths."""
    parts = []
    for (_, width, align), value in zip(_TABLE_COLUMNS, cells):
        parts.append(f'{_cell(value):{align}{width}}')
    return ' '.join(parts).rstrip()


def format_table(summary: Mapping[str, Any]) -> str:
    """
    Lay out ``BudgetTracker.summary()`` as a fixed-width text table.

    Stage rows show service time (p50..max) and queue wait (qwait) in ms; the
    budget covers both.  Ingest, transport and end_to_end rows show their own
    latency; end_to_end's budget is the deadline.
    """
    lines: list[str] = []
    header = _row(name for name, _, _ in _TABLE_COLUMNS)
    for camera, report in summary.get('cameras', {}).items():
        frames = report.get('frames', 0)
        misses = report.get('deadline_misses', 0)
        rate = misses / frames if frames else 0.0
        lines.append(f'camera {camera}: {frames} frames, {misses} deadline misses '
                     f'({rate:.2%}), deadline {summary.get("deadline_ms", math.nan):.3f} ms')
        lines.append(header)
        lines.append('-' * len(header))
        rows = [(INGEST, report.get(INGEST))]
        rows += list(report.get('stages', {}).items())
        rows += [(TRANSPORT, report.get(TRANSPORT)), (END_TO_END, report.get(END_TO_END))]
        for name, entry in rows:
            if entry is None:
                continue
            lines.append(_row((name, entry.get('count'), entry.get('p50_ms'),
                               entry.get('p95_ms'), entry.get('p99_ms'), entry.get('max_ms'),
                               entry.get('queue_wait_p50_ms'), entry.get('queue_wait_p99_ms'),
                               entry.get('budget_ms'), entry.get('status', ''))))
        lines.append('')
    if not lines:
        return 'no frames observed\n'
    lines.append('stage rows: service time in ms; qwait: queue wait in ms; '
                 'a stage budget covers queue wait + service')
    return '\n'.join(lines) + '\n'

"""
The latency budget: per-stage budgets, the deadline and the monitor's settings, validated.

Why plain: the budget monitor node declares its ROS parameters from it
(``BudgetConfig.to_mapping``), and the main job and the benchmarks read config/budget.yaml
through it (``BudgetConfig.from_mapping``); one parser, one set of rules.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any, Mapping, Optional

from edge_infer_ros.core.params import flatten_parameters
from edge_infer_ros.core.shape import default_stage_budgets_ms
from edge_infer_ros.core.validate import MAX_HARDWARE_ID

#: Status names of the per-camera path items (the stages use their own names).
INGEST = 'ingest'


TRANSPORT = 'transport'


END_TO_END = 'end_to_end'


SLACK = 'slack'


#: Names a stage budget may not use: they are path items or the slack.
RESERVED_NAMES = frozenset({INGEST, TRANSPORT, END_TO_END, SLACK})


#: Prefix of the stage budgets in the flat (ROS parameter) mapping.
BUDGET_PREFIX = 'budget_ms.'


#: Prefix of the per-camera sections: ``cameras.<camera>.deadline_ms``,
#: ``cameras.<camera>.budget_ms.<item>``.
CAMERAS_PREFIX = 'cameras.'


#: Keys a camera's section may set (besides ``budget_ms.<stage>``).
CAMERA_KEYS = frozenset({'deadline_ms'})


#: Default budget of each stage, from the pipeline's shape.
DEFAULT_STAGE_BUDGETS_MS: dict[str, float] = default_stage_budgets_ms()


_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


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
    #: '' : the monitor node's namespace (see ros/node_params.py hardware_id_for).
    hardware_id: str = ''
    #: Bounds of the tracker's state (traces with ever-new names must not grow it).
    max_cameras: int = 16
    max_stages: int = 16
    entry_timeout_s: float = 30.0
    #: Per camera (named by its frames' frame_id): ``deadline_ms`` and ``budget_ms.<item>``
    #: overriding the values above for that camera's frames.
    cameras: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def for_camera(self, camera: str) -> 'BudgetConfig':
        """Return the budgets of one camera: the defaults with its section applied."""
        section = self.cameras.get(camera)
        if not section:
            return self
        return BudgetConfig.from_mapping(section, base=dataclasses.replace(self, cameras={}))

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
        problems.extend(_camera_problems(self))
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
        for camera, section in self.cameras.items():
            for key, value in section.items():
                mapping[f'{CAMERAS_PREFIX}{camera}.{key}'] = float(value)
        return mapping

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], base: 'Optional[BudgetConfig]' = None,
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
        cameras: dict[str, dict[str, float]] = {}
        for key, value in flat.items():
            if key.startswith(CAMERAS_PREFIX):
                camera, _, item = key[len(CAMERAS_PREFIX):].partition('.')
                cameras.setdefault(camera, {})[item] = _number(key, value)
            elif key.startswith(BUDGET_PREFIX):
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
        if cameras:
            merged = {name: dict(section) for name, section in config.cameras.items()}
            for name, section in cameras.items():
                merged.setdefault(name, {}).update(section)
            config.cameras = merged
        return config.validate()


_FLOAT_KEYS = frozenset({'deadline_ms', 'window_max_age_s', 'warn_percentile',
                         'miss_rate_error', 'stale_timeout_s', 'diagnostics_period_s',
                         'entry_timeout_s'})


_INT_KEYS = frozenset({'window_size', 'min_samples', 'max_cameras', 'max_stages'})


#: Ranges of the state bounds (also the ROS parameters' ranges).
MAX_CAMERAS_RANGE = (1, 256)


MAX_STAGES_RANGE = (1, 64)

#: Ceiling of the monitor's window memory, bytes: window_size x max_cameras x (windows per
#: camera) is refused above it, so no legal parameter sequence can balloon the monitor.
MAX_WINDOW_BYTES = 256 * 2 ** 20
#: Windows per camera: end to end, ingest and transport, and four per stage.
CAMERA_WINDOWS = 3
STAGE_WINDOWS = 4
#: Bytes per sample of a window (a float64 value and an int64 time).
SAMPLE_BYTES = 16


def window_bytes(window_size: int, max_cameras: int, max_stages: int) -> int:
    """Return the most memory the windows take with these bounds, bytes."""
    windows = max_cameras * (CAMERA_WINDOWS + STAGE_WINDOWS * max_stages)
    return windows * window_size * SAMPLE_BYTES


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
    if not problems and _is_int(config.window_size) and config.window_size >= 1:
        need = window_bytes(config.window_size, config.max_cameras, config.max_stages)
        if need > MAX_WINDOW_BYTES:
            per_sample = need // config.window_size
            problems.append(f'window_size {config.window_size} x max_cameras '
                            f'{config.max_cameras} x max_stages {config.max_stages} needs '
                            f'{need / 2 ** 20:.0f} MiB of windows, more than the ceiling of '
                            f'{MAX_WINDOW_BYTES // 2 ** 20} MiB: window_size at most '
                            f'{MAX_WINDOW_BYTES // per_sample} with these bounds')
    return problems


#: Most cameras a budget file may name (each is followed like any other camera).
MAX_CONFIGURED_CAMERAS = 64


def _camera_problems(config: BudgetConfig) -> list[str]:
    """Return why the per-camera sections are invalid: names, keys, values."""
    problems: list[str] = []
    if not isinstance(config.cameras, Mapping):
        return [f'cameras must be a mapping of camera name to budgets, got '
                f'{type(config.cameras).__name__}']
    if len(config.cameras) > MAX_CONFIGURED_CAMERAS:
        problems.append(f'cameras names {len(config.cameras)} cameras, at most '
                        f'{MAX_CONFIGURED_CAMERAS}')
    for camera, section in config.cameras.items():
        if not isinstance(camera, str) or not _NAME_RE.match(camera):
            problems.append(f'camera name {camera!r} in cameras is not a valid parameter name '
                            "(letters, digits, underscores; the frames' frame_id)")
            continue
        for key, value in section.items():
            where = f'{CAMERAS_PREFIX}{camera}.{key}'
            item = key[len(BUDGET_PREFIX):] if key.startswith(BUDGET_PREFIX) else ''
            if key not in CAMERA_KEYS and not (item and _NAME_RE.match(item)):
                problems.append(f'{where}: unknown key (deadline_ms or budget_ms.<stage>)')
            elif item == SLACK or item == END_TO_END:
                problems.append(f'{where}: {item} cannot be set per camera')
            elif not _is_finite(value) or value <= 0:
                problems.append(f'{where} must be a finite number > 0, got {value!r}')
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


def own_copy(config: BudgetConfig) -> BudgetConfig:
    """Copy a config so later changes by the caller cannot bypass set_config."""
    return dataclasses.replace(config, stage_budgets_ms=dict(config.stage_budgets_ms),
                               cameras={k: dict(v) for k, v in config.cameras.items()})


#: Largest budget file read (a parameter file of a few kB; anything larger is a mistake).
MAX_BUDGET_FILE_BYTES = 1_000_000


def load_budget_file(path: str) -> BudgetConfig:
    """
    Read a budget file (config/budget.yaml's format) into a validated config.

    Raises ValueError with a one-line reason naming the file: missing, too large, not YAML,
    or invalid budgets.
    """
    import yaml  # only where a file is read: the monitor's plain logic needs no YAML

    try:
        with open(path, 'rb') as stream:
            data = stream.read(MAX_BUDGET_FILE_BYTES + 1)
    except OSError as error:
        raise ValueError(f'budget file {path}: {error.strerror or error}') from None
    if len(data) > MAX_BUDGET_FILE_BYTES:
        raise ValueError(f'budget file {path} is larger than {MAX_BUDGET_FILE_BYTES} bytes')
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None)
        where = f' line {mark.line + 1}' if mark is not None else ''
        raise ValueError(f'budget file {path}{where}: not valid YAML '
                         f'({getattr(error, "problem", None) or error})') from None
    if not isinstance(document, Mapping):
        raise ValueError(f'budget file {path}: expected a mapping of node sections')
    try:
        return BudgetConfig.from_mapping(document)
    except ValueError as error:
        raise ValueError(f'budget file {path}: {error}') from None

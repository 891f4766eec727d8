"""
Declarative ROS parameters: one spec per parameter, used by the node, the checks and the docs.

Why: a parameter's type, range, default, whether it may change at run time and how it is
validated must agree in four places (the descriptor ``ros2 param describe`` shows, the runtime
validation of ``ros2 param set``, the YAML files, the README table). Writing each once, here,
keeps them from drifting; a test compares the README table with these specs.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import yaml


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter."""

    name: str
    default: Any
    description: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[tuple[str, ...]] = None
    runtime: bool = True
    check: Optional[Callable[[Any], Optional[str]]] = None
    #: item type of a list parameter (str or float); lists must say it
    list_of: Optional[type] = None

    def __post_init__(self) -> None:
        if isinstance(self.default, (list, tuple)) and self.list_of not in (str, float):
            raise ValueError(f'list parameter {self.name} needs list_of=str or float')

    @property
    def type_name(self) -> str:
        """Name of the parameter type as ROS shows it."""
        if isinstance(self.default, (list, tuple)):
            return 'string[]' if self.list_of is str else 'double[]'
        return {bool: 'bool', int: 'integer', float: 'double', str: 'string'}[type(self.default)]

    def range_text(self) -> str:
        """Human-readable range or choices, for the docs."""
        if self.choices:
            return ' \\| '.join(self.choices)
        if self.low is not None or self.high is not None:
            low = '-inf' if self.low is None else _fmt(self.low)
            high = 'inf' if self.high is None else _fmt(self.high)
            return f'[{low}, {high}]'
        return ''

    def validate(self, value: Any) -> Optional[str]:
        """Return why ``value`` is not acceptable, or None when it is."""
        expected = type(self.default)
        if isinstance(self.default, (list, tuple)):
            if not isinstance(value, (list, tuple)):
                return f'{self.name} must be a list, got {type(value).__name__}'
            item_type = self.list_of
            for item in value:
                if item_type is str and not isinstance(item, str):
                    return f'{self.name} must hold strings, got {item!r}'
                if item_type is float and (isinstance(item, bool) or
                                           not isinstance(item, (int, float))):
                    return f'{self.name} must hold numbers, got {item!r}'
        elif expected is float:
            if isinstance(value, int) and not isinstance(value, bool):
                # rclpy refuses an integer for a double parameter: say so with the fix.
                return f'{self.name} is a double: write {value}.0, not {value}'
            if isinstance(value, bool) or not isinstance(value, float):
                return f'{self.name} must be a number, got {type(value).__name__}'
            if not math.isfinite(value):
                return f'{self.name} must be finite, got {value}'
        elif expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f'{self.name} must be an integer, got {type(value).__name__}'
        elif expected in (bool, str) and not isinstance(value, expected):
            return f'{self.name} must be a {expected.__name__}, got {type(value).__name__}'
        numeric = not isinstance(value, (list, tuple, str))
        if numeric and self.low is not None and value < self.low:
            return f'{self.name} must be >= {_fmt(self.low)}, got {value}'
        if numeric and self.high is not None and value > self.high:
            return f'{self.name} must be <= {_fmt(self.high)}, got {value}'
        if self.choices and value not in self.choices:
            return f'{self.name} must be one of {", ".join(self.choices)}; got {value!r}'
        if self.check is not None:
            return self.check(value)
        return None


def _fmt(number: float) -> str:
    return f'{number:g}'


def spec_map(specs: Iterable[ParamSpec]) -> dict[str, ParamSpec]:
    """Index specs by name (and refuse duplicates, a programming error)."""
    result: dict[str, ParamSpec] = {}
    for spec in specs:
        if spec.name in result:
            raise ValueError(f'parameter {spec.name} declared twice')
        result[spec.name] = spec
    return result


def validate_updates(specs: Mapping[str, ParamSpec], updates: Mapping[str, Any],
                     active: bool) -> Optional[str]:
    """
    Check a batch of parameter changes; return the reason to refuse it, or None.

    ``active`` says whether the node is running: start-only parameters (``runtime=False``,
    for example the model file of the detector) are refused then, with a reason telling how
    to change them: deactivate, set, then cleanup and configure (they apply at configure).
    """
    for name, value in updates.items():
        spec = specs.get(name)
        if spec is None:
            continue  # not ours (e.g. use_sim_time, qos overrides): rclpy decides
        if active and not spec.runtime:
            return (f'{name} is start-only and cannot change while the node is active: '
                    'deactivate the node, set it, then cleanup and configure (it applies at '
                    'the next configure) and activate')
        reason = spec.validate(value)
        if reason:
            return reason
    return None


def markdown_table(title: str, specs: Sequence[ParamSpec]) -> str:
    """Render specs as the README's Markdown table (a test keeps the README equal to this)."""
    lines = [f'#### {title}', '',
             '| parameter | type | default | range | runtime | description |',
             '|---|---|---|---|---|---|']
    for spec in specs:
        default = spec.default
        if isinstance(default, (list, tuple)):
            default_text = '[' + ', '.join(repr(v) if isinstance(v, str) else _fmt(v)
                                           for v in default) + ']'
        elif isinstance(default, str):
            default_text = repr(default)
        elif isinstance(default, bool):
            default_text = str(default).lower()
        else:
            default_text = _fmt(default) if isinstance(default, float) else str(default)
        lines.append(f'| `{spec.name}` | {spec.type_name} | `{default_text}` | '
                     f'{spec.range_text()} | {"yes" if spec.runtime else "no"} | '
                     f'{spec.description} |')
    return '\n'.join(lines) + '\n'


def flatten_parameters(mapping: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    """Join nested mappings into dotted ROS parameter names (``budget_ms: {nms: 5}``)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f'{prefix}{key}'
        if isinstance(value, Mapping):
            items = flatten_parameters(value, name + '.')
        else:
            items = {name: value}
        for sub_name, sub_value in items.items():
            if sub_name in flat:
                raise ValueError(f'parameter {sub_name!r} is given twice (flat and nested)')
            flat[sub_name] = sub_value
    return flat


def params_files_in(argv: Sequence[str]) -> list[str]:
    """Return the files of every ``--params-file FILE`` pair on a command line, in order."""
    return [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == '--params-file']


def param_file_error(path: str) -> Optional[str]:
    """
    Return one line naming the file, line and column of a YAML error in it (None: it parses).

    Why: rcl's parser and PyYAML alike raise out of the node's constructor, and the user got
    a Python traceback with the position buried in it; a node, the container and the runner
    check their files first and exit 2 with this line instead.
    """
    try:
        with open(path, encoding='utf-8') as stream:
            yaml.safe_load(stream)
    except OSError as error:
        return f'{path}: cannot read the parameter file: {error.strerror or error}'
    except UnicodeDecodeError as error:
        return f'{path}: not UTF-8 text (byte {error.start})'
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None) or getattr(error, 'context_mark', None)
        where = f':{mark.line + 1}:{mark.column + 1}' if mark is not None else ''
        problem = getattr(error, 'problem', None) or str(error).splitlines()[0]
        context = getattr(error, 'context', None)
        detail = f'{problem} ({context})' if context else f'{problem}'
        return f'{path}{where}: YAML syntax error in the parameter file: {detail}'
    return None

"""
Check the parameter files of config/ against the nodes that read them.

Every section must be for a node of PIPELINE and sit in a file PIPELINE gives that node, every
key (nested maps flattened with '.', as ROS reads them) must be a parameter the node declares,
and every value must pass that parameter's ParamSpec.validate(). Finally each node is created
with its files, the way the runner and the launch files load them, which also catches what
only rclpy or a node's cross-parameter rules refuse (an integer for a double, budgets that do
not fit the deadline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_infer_ros.core.params import flatten_parameters, ParamSpec
from edge_infer_ros.ros.container import ComponentSpec, node_arguments
from edge_infer_ros.ros.graph import load_plugin, PIPELINE
import pytest
import rclpy
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / 'config'
CONFIG_FILES = ('pipeline.yaml', 'budget.yaml')
BY_NAME = {spec.name: spec for spec in PIPELINE}


def load(file_name: str) -> dict[str, Any]:
    """Return the content of a file of config/."""
    with open(CONFIG_DIR / file_name, encoding='utf-8') as stream:
        return yaml.safe_load(stream) or {}


def node_name(key: str) -> str:
    """Return the node name of a section key: ``camera``, ``/camera`` or ``/**/camera``."""
    return key.rsplit('/', 1)[-1]


def sections() -> list[tuple[str, str, dict[str, Any]]]:
    """Return (file, section key, flattened parameters) of every section of the files."""
    result = []
    for file_name in CONFIG_FILES:
        for key, section in load(file_name).items():
            assert isinstance(section, dict) and set(section) == {'ros__parameters'}, \
                f'{file_name}: {key} must hold exactly ros__parameters'
            result.append((file_name, key, flatten_parameters(section['ros__parameters'] or {})))
    return result


SECTIONS = sections()
IDS = [f'{f}:{k}' for f, k, _ in SECTIONS]


def _integer_for_double(spec: ParamSpec, value: Any) -> bool:
    doubles = isinstance(spec.default, float) or (
        isinstance(spec.default, (list, tuple)) and spec.list_of is float)
    items = value if isinstance(value, (list, tuple)) else [value]
    return doubles and any(isinstance(v, int) and not isinstance(v, bool) for v in items)


def section_problems(file_name: str, key: str, values: dict[str, Any]) -> list[str]:
    """Return what is wrong with one section: unknown node, wrong file, parameters, values."""
    name = node_name(key)
    spec = BY_NAME.get(name)
    if spec is None:
        return [f'{file_name}: section {key!r} is for no node of PIPELINE '
                f'({", ".join(BY_NAME)})']
    problems = []
    if file_name not in spec.param_files:
        problems.append(f'{file_name}: {name} does not read this file (PIPELINE gives it '
                        f'{spec.param_files})')
    specs = load_plugin(spec.plugin).declared_specs()
    for param, value in values.items():
        if param not in specs:
            problems.append(f'{file_name}: {name} declares no parameter {param!r}')
            continue
        reason = specs[param].validate(value)
        if reason:
            problems.append(f'{file_name}: {name}.{param}: {reason}')
        elif _integer_for_double(specs[param], value):
            problems.append(f'{file_name}: {name}.{param}: write {value!r} with a decimal '
                            'point: ROS refuses an integer for a double parameter')
    return problems


def test_config_files_exist() -> None:
    for file_name in CONFIG_FILES:
        assert (CONFIG_DIR / file_name).is_file(), file_name


@pytest.mark.parametrize('file_name,key,values', SECTIONS, ids=IDS)
def test_section_is_for_a_node_and_its_parameters(file_name: str, key: str,
                                                  values: dict[str, Any]) -> None:
    assert section_problems(file_name, key, values) == []


def test_every_node_has_a_section_in_its_files() -> None:
    for spec in PIPELINE:
        for file_name in spec.param_files:
            names = {node_name(k) for k in load(file_name)}
            assert spec.name in names, f'{file_name} has no section for {spec.name}'


BROKEN = [
    ('pipeline.yaml', 'camera', {'widht': 640}),  # no such parameter
    ('pipeline.yaml', 'camera', {'fps': 0.0}),  # out of range
    ('pipeline.yaml', 'camera', {'fps': 30}),  # an integer for a double
    ('pipeline.yaml', 'camera', {'source': 'usb'}),  # not one of the choices
    ('pipeline.yaml', 'nms', {'max_detections': '100'}),  # wrong type
    ('pipeline.yaml', 'cam', {'width': 640}),  # no such node
    ('budget.yaml', 'camera', {'width': 640}),  # a file the node does not read
    ('budget.yaml', 'budget_monitor', {'budget_ms.nms': -1.0}),  # out of range
]


@pytest.mark.parametrize('file_name,key,values', BROKEN)
def test_checks_find_broken_sections(file_name: str, key: str, values: dict[str, Any]) -> None:
    assert section_problems(file_name, key, values)


@pytest.fixture
def context():
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.mark.parametrize('spec', PIPELINE, ids=[s.name for s in PIPELINE])
def test_node_loads_its_files(spec: Any, context: Any) -> None:
    files = [str(CONFIG_DIR / f) for f in spec.param_files]
    arguments = node_arguments(ComponentSpec(spec.plugin, spec.name, param_files=files))
    node = load_plugin(spec.plugin)(spec.name, context=context, cli_args=arguments)
    try:
        for file_name in spec.param_files:
            for key, section in load(file_name).items():
                if node_name(key) != spec.name:
                    continue
                for param, value in flatten_parameters(section['ros__parameters']).items():
                    assert node.p[param] == pytest.approx(value), (file_name, param)
    finally:
        node.destroy_node()

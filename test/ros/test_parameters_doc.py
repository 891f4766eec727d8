"""
Keep the README's parameter tables and the nodes' declared parameters in agreement.

The README's tables must be exactly what scripts/param_table.py generates from the ParamSpecs,
and every node, created for real in an rclpy context, must declare exactly its PARAMS plus
COMMON_PARAMS, with the types, ranges, descriptions and defaults of those specs.
"""

from __future__ import annotations

from dataclasses import replace
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from edge_infer_ros.core.params import ParamSpec
from edge_infer_ros.ros.compat import list_parameters
from edge_infer_ros.ros.graph import load_plugin, PIPELINE
from edge_infer_ros.ros.node_params import COMMON_PARAMS
import pytest
from rcl_interfaces.msg import ParameterType
import rclpy
from rclpy.lifecycle import LifecycleNode

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / 'README.md'
SCRIPT = ROOT / 'scripts' / 'param_table.py'
TYPES = {'bool': ParameterType.PARAMETER_BOOL, 'integer': ParameterType.PARAMETER_INTEGER,
         'double': ParameterType.PARAMETER_DOUBLE, 'string': ParameterType.PARAMETER_STRING,
         'string[]': ParameterType.PARAMETER_STRING_ARRAY,
         'double[]': ParameterType.PARAMETER_DOUBLE_ARRAY}


def param_table() -> ModuleType:
    """Import scripts/param_table.py (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location('param_table', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_specs(node: Any) -> list[ParamSpec]:
    """
    Return the specs a node should declare: COMMON_PARAMS, then its class's PARAMS.

    A class may give a common parameter a default of its own (``DEFAULT_INPUT_MODE``, ...):
    that default is taken from the node's own specs, everything else must be COMMON_PARAMS'.
    """
    common = [replace(s, default=node.param_specs[s.name].default) for s in COMMON_PARAMS]
    return common + list(type(node).PARAMS)


def test_readme_tables_are_generated() -> None:
    module = param_table()
    section = module.readme_section(README.read_text(encoding='utf-8'))
    assert section == module.render().strip('\n'), \
        'README parameter tables are stale: python scripts/param_table.py --readme'


def test_doc_has_a_table_per_node_and_one_for_common_parameters() -> None:
    text = param_table().render()
    headings = [line for line in text.splitlines() if line.startswith('#### ')]
    assert len(headings) == len(PIPELINE) + 1
    for heading, spec in zip(headings, PIPELINE):
        assert heading.startswith(f'#### {spec.name} ') and spec.plugin in heading
    assert headings[-1] == '#### Every stage node'
    for spec in COMMON_PARAMS:
        assert text.count(f'| `{spec.name}` |') == 1, spec.name


def test_script_writes_the_readme_section(tmp_path: Path) -> None:
    module = param_table()
    target = tmp_path / 'README.md'
    target.write_text(f'intro\n{module.BEGIN}\nSTALE-TABLES\n{module.END}\noutro\n',
                      encoding='utf-8')
    assert module.main(['--readme', str(target)]) == 0
    text = target.read_text(encoding='utf-8')
    assert text.startswith('intro\n') and text.endswith('outro\n') and 'STALE-TABLES' not in text
    assert module.readme_section(text) == module.render().strip('\n')


@pytest.fixture(scope='module')
def context() -> Iterator[Any]:
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope='module')
def internal_names(context: Any) -> set[str]:
    """Return the parameters rclpy itself declares on a lifecycle node (use_sim_time, ...)."""
    node = LifecycleNode('baseline', context=context)
    try:
        return set(node.get_parameters_by_prefix(''))
    finally:
        node.destroy_node()


@pytest.fixture(params=PIPELINE, ids=[s.name for s in PIPELINE])
def node(request: Any, context: Any) -> Iterator[Any]:
    instance = load_plugin(request.param.plugin)(request.param.name, context=context)
    yield instance
    instance.destroy_node()


def test_node_specs_are_common_and_class_specs(node: Any) -> None:
    # Only the default of a common parameter may differ per class.
    assert list(node.param_specs.values()) == expected_specs(node)


def test_declared_names_are_the_specs(node: Any, internal_names: set[str]) -> None:
    assert 'use_sim_time' in internal_names
    expected = [s.name for s in expected_specs(node)]
    declared = set(node.get_parameters_by_prefix('')) - internal_names
    listed = set(list_parameters(node, [], 0).names) - internal_names
    assert declared == listed == set(expected)
    assert len(expected) == len(set(expected)), 'a parameter is specified twice'


def test_descriptors_match_the_specs(node: Any) -> None:
    for spec in expected_specs(node):
        descriptor = node.describe_parameter(spec.name)
        assert descriptor.type == TYPES[spec.type_name], spec.name
        assert descriptor.description == spec.description, spec.name
        ranged = spec.low is not None or spec.high is not None
        if isinstance(spec.default, int) and not isinstance(spec.default, bool) and ranged:
            [integer_range] = descriptor.integer_range
            assert (integer_range.from_value, integer_range.to_value) == (
                spec.low if spec.low is not None else -2**63,
                spec.high if spec.high is not None else 2**63 - 1), spec.name
            assert list(descriptor.floating_point_range) == [], spec.name
        elif isinstance(spec.default, float) and ranged:
            [float_range] = descriptor.floating_point_range
            assert float_range.from_value == pytest.approx(
                spec.low if spec.low is not None else -1e308), spec.name
            assert float_range.to_value == pytest.approx(
                spec.high if spec.high is not None else 1e308), spec.name
            assert list(descriptor.integer_range) == [], spec.name
        else:
            assert list(descriptor.integer_range) == [], spec.name
            assert list(descriptor.floating_point_range) == [], spec.name


def test_defaults_match_the_specs(node: Any) -> None:
    for spec in expected_specs(node):
        value = node.get_parameter(spec.name).value
        if isinstance(spec.default, (list, tuple)):
            assert list(value) == list(spec.default), spec.name
        else:
            assert value == spec.default and type(value) is type(spec.default), spec.name

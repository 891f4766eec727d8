"""
Humble's rclpy surface: the package, its tests, bench and scripts use nothing newer.

Compares every use of rclpy in the code with ros2/rclpy's ``humble`` branch, as recorded in
``humble_sim/rclpy_humble_surface.json``: modules and names imported, members used by name,
keyword arguments passed. This covers what the run-time simulation (``humble_sim/``) cannot take
away, such as enum members and functions rclpy uses inside itself. A use behind a feature check
(an ``if`` on ``hasattr`` or a ``HAS_*`` flag, or a ``try`` that catches ``ImportError`` /
``AttributeError``) is a fallback, and allowed.
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path
import subprocess
import sys
import textwrap
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / 'humble_sim'))

import rclpy_surface  # noqa: E402, I100

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ('edge_infer_ros', 'test', 'bench', 'scripts', 'launch', 'models')
#: The simulation itself reaches the newer rclpy on purpose.
NOT_CHECKED = {ROOT / 'test' / 'humble_sim' / 'rclpy_humble_sim.py'}


def _files() -> list[Path]:
    files = [p for d in CODE_DIRS for p in sorted((ROOT / d).rglob('*.py'))]
    return [p for p in files if p not in NOT_CHECKED]


@pytest.fixture(scope='module')
def surfaces() -> tuple[rclpy_surface.Surface, rclpy_surface.Surface]:
    return rclpy_surface.humble_surface(), rclpy_surface.installed_surface()


def _guarded(parents: list[ast.AST]) -> bool:
    """Return whether a node sits behind a feature check (a fallback is allowed)."""
    for parent in parents:
        if isinstance(parent, ast.FunctionDef) and any(
                'HAS_' in ast.unparse(d) for d in parent.decorator_list):
            return True  # a test skipped where the feature is missing
        if isinstance(parent, ast.If):
            test = ast.unparse(parent.test)
            if 'hasattr' in test or 'HAS_' in test:
                return True
        if isinstance(parent, ast.Try):
            caught = ' '.join(ast.unparse(h.type) for h in parent.handlers if h.type)
            if 'ImportError' in caught or 'AttributeError' in caught:
                return True
    return False


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, list[ast.AST]]]:
    stack: list[tuple[ast.AST, list[ast.AST]]] = [(tree, [])]
    while stack:
        node, parents = stack.pop()
        yield node, parents
        for child in ast.iter_child_nodes(node):
            stack.append((child, parents + [node]))


@functools.lru_cache(maxsize=1)
def _own_names() -> frozenset[str]:
    """Return the function and method names the code defines itself (compat's, for one)."""
    return frozenset(n.name for path in _files() for n in ast.walk(ast.parse(path.read_text()))
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _newer_members(humble: rclpy_surface.Surface,
                   installed: rclpy_surface.Surface) -> dict[str, str]:
    """
    Member names only the newer rclpy has, on no class or module of Humble's at all.

    Names the code defines itself are left to the check of calls on nodes below: an
    attribute of that name may well be the code's own (``ParameterServicesClient``'s).
    """
    known = set(_own_names())
    for module in humble.values():
        known.update(module['names'])
        for cls in module['classes'].values():
            known.update(cls['members'])
            known.update(p for params in cls['params'].values() for p in params)
    newer = {}
    for name, module in installed.items():
        for class_name, cls in module['classes'].items():
            old = humble.get(name, {}).get('classes', {}).get(class_name)
            if old is None:
                continue
            for member in set(cls['members']) - set(old['members']) - known:
                newer[member] = f'{name}.{class_name}.{member}'
    return newer


def _newer_keywords(humble: rclpy_surface.Surface,
                    installed: rclpy_surface.Surface) -> dict[str, dict[str, str]]:
    """Per method name, the keyword parameters only the newer rclpy's method has."""
    newer: dict[str, dict[str, str]] = {}
    for name, module in installed.items():
        for class_name, cls in module['classes'].items():
            old = humble.get(name, {}).get('classes', {}).get(class_name)
            if old is None:
                continue
            for method, params in cls['params'].items():
                if method in old['params']:
                    for param in set(params) - set(old['params'][method]):
                        newer.setdefault(method, {})[param] = f'{name}.{class_name}.{method}'
    return newer


def test_the_record_is_humbles_and_differs_from_the_installed_rclpy(surfaces) -> None:
    humble, installed = surfaces
    assert 'rclpy.qos_event' in humble and 'rclpy.event_handler' not in humble
    node = humble['rclpy.node']['classes']['Node']
    assert 'add_on_set_parameters_callback' in node['members']
    assert 'add_post_set_parameters_callback' not in node['members']
    assert 'list_parameters' not in node['members']
    # The comparison has something to find on this rclpy (Jazzy or newer).
    assert 'rclpy.event_handler' in installed
    assert 'list_parameters' in installed['rclpy.node']['classes']['Node']['members']


def test_code_imports_only_modules_and_names_humble_has(surfaces) -> None:
    humble, _ = surfaces
    problems = []
    for path in _files():
        tree = ast.parse(path.read_text(), str(path))
        for node, parents in _walk(tree):
            where = f'{path.relative_to(ROOT)}:{getattr(node, "lineno", 0)}'
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split('.')[0] == 'rclpy' and alias.name not in humble \
                            and not _guarded(parents):
                        problems.append(f'{where}: import {alias.name} (not in Humble)')
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                    node.module.split('.')[0] == 'rclpy' and not _guarded(parents):
                if node.module not in humble:
                    problems.append(f'{where}: from {node.module} (not in Humble)')
                    continue
                for alias in node.names:
                    if alias.name not in humble[node.module]['names'] and \
                            f'{node.module}.{alias.name}' not in humble:
                        problems.append(f'{where}: {alias.name} from {node.module} '
                                        '(not in Humble)')
    assert not problems, 'rclpy newer than Humble:\n' + '\n'.join(problems)


def test_code_uses_no_member_or_keyword_newer_than_humble(surfaces) -> None:
    humble, installed = surfaces
    members = _newer_members(humble, installed)
    keywords = _newer_keywords(humble, installed)
    assert 'get_publisher_count' in members and 'autostart' in keywords['create_timer']
    problems = []
    for path in _files():
        tree = ast.parse(path.read_text(), str(path))
        for node, parents in _walk(tree):
            if _guarded(parents):
                continue
            where = f'{path.relative_to(ROOT)}:{getattr(node, "lineno", 0)}'
            if isinstance(node, ast.Attribute) and node.attr in members:
                problems.append(f'{where}: .{node.attr} ({members[node.attr]}, not in Humble)')
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in keywords:
                for keyword in node.keywords:
                    if keyword.arg in keywords[node.func.attr]:
                        problems.append(f'{where}: {node.func.attr}({keyword.arg}=) '
                                        f'({keywords[node.func.attr][keyword.arg]}, '
                                        'not in Humble)')
    assert not problems, 'rclpy newer than Humble:\n' + '\n'.join(problems)


def test_code_calls_no_node_method_newer_than_humble(surfaces) -> None:
    # Node methods whose names Humble or the code itself use elsewhere (list_parameters is
    # also the fallback client's) are not caught above: check calls on nodes by name.
    humble, installed = surfaces
    old = set(humble['rclpy.node']['classes']['Node']['members'])
    new = set(installed['rclpy.node']['classes']['Node']['members']) - old
    assert {'list_parameters', 'add_post_set_parameters_callback'} <= new
    problems = []
    for path in _files():
        tree = ast.parse(path.read_text(), str(path))
        for node, parents in _walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in new and not _guarded(parents):
                receiver = ast.unparse(node.func.value)
                if receiver in ('self', 'node', 'super()') or receiver.endswith(('node', 'Node')):
                    problems.append(f'{path.relative_to(ROOT)}:{node.lineno}: '
                                    f'{receiver}.{node.func.attr}() (Node, not in Humble)')
    assert not problems, 'rclpy newer than Humble:\n' + '\n'.join(problems)


SIMULATION_PROBE = textwrap.dedent("""
    import warnings
    warnings.filterwarnings('error', message='.*qos_event')  # Humble's module does not warn
    import rclpy_humble_sim
    assert rclpy_humble_sim._applied, 'the simulation did not start'
    for name in ('rclpy.event_handler', 'rclpy.parameter_client',
                 'rclpy.parameter_event_handler', 'rclpy.type_description_service'):
        try:
            __import__(name)
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError(name + ' is importable')
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks
    from rclpy.qos_event import QoSEventHandler
    import rclpy
    from rclpy.node import Node
    from rclpy.lifecycle import LifecycleNode
    for cls in (Node, LifecycleNode):
        for name in ('add_post_set_parameters_callback', 'list_parameters', 'wait_for_node'):
            assert not hasattr(cls, name), name
    from edge_infer_ros.ros import compat
    assert not (compat.HAS_EVENT_HANDLER_MODULE or compat.HAS_POST_SET_PARAMETERS_CALLBACK or
                compat.HAS_LIST_PARAMETERS or compat.HAS_PARAMETER_CLIENT)
    assert compat.SubscriptionEventCallbacks is SubscriptionEventCallbacks
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node('probe', context=context)
    try:
        node.create_timer(1.0, lambda: None, autostart=False)
    except TypeError as error:
        assert 'autostart' in str(error)
    else:
        raise AssertionError('create_timer took autostart=')
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    print(rclpy_humble_sim.describe())
""")


def test_simulation_takes_away_what_humble_lacks() -> None:
    env = dict(os.environ, EIR_HUMBLE_SIM='1', PYTHONPATH=os.pathsep.join(
        [str(ROOT / 'test' / 'humble_sim')] + os.environ.get('PYTHONPATH', '').split(os.pathsep)))
    result = subprocess.run([sys.executable, '-c', SIMULATION_PROBE], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'modules hidden' in result.stdout and 'rclpy.event_handler' in result.stdout


def test_simulation_stays_out_of_the_ros2_tools(tmp_path: Path) -> None:
    # The ros2 CLI built here is Jazzy's or Rolling's; a real Humble install has its own.
    probe = tmp_path / 'ros2'
    probe.write_text('import sys\nprint("rclpy_humble_sim" in sys.modules)\n')
    env: dict[str, Any] = dict(os.environ, EIR_HUMBLE_SIM='1', PYTHONPATH=os.pathsep.join(
        [str(ROOT / 'test' / 'humble_sim')] + os.environ.get('PYTHONPATH', '').split(os.pathsep)))
    result = subprocess.run([sys.executable, str(probe)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == 'False', result.stdout + result.stderr

"""The ROS boundary and the layers are checked facts: ROS-free packages, imports pointing down."""

import ast
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
PLAIN_PACKAGES = ('core', 'stages', 'inference', 'monitor')

#: Run in a fresh interpreter: this test process has long imported rclpy.
_PROBE = r"""
import importlib, importlib.abc, pkgutil, sys

BLOCKED_ROOTS = ('rclpy', 'rcl_interfaces', 'builtin_interfaces', 'launch', 'launch_ros',
                 'rosidl_runtime_py', 'ament_index_python', 'rosidl_parser')


class BlockRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        root = name.split('.')[0]
        if root in BLOCKED_ROOTS or root.endswith('_msgs') or root.endswith('_srvs'):
            raise ImportError(f'{name} is a ROS module: blocked by the boundary test')
        return None


sys.meta_path.insert(0, BlockRos())
import edge_infer_ros
imported = []
for package in sys.argv[1:]:
    module = importlib.import_module(f'edge_infer_ros.{package}')
    imported.append(module.__name__)
    for info in pkgutil.walk_packages(module.__path__, module.__name__ + '.'):
        importlib.import_module(info.name)
        imported.append(info.name)
print('\n'.join(imported))
"""


def _probe(*packages: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', _PROBE, *packages], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_plain_packages_import_without_ros() -> None:
    result = _probe(*PLAIN_PACKAGES)
    assert result.returncode == 0, result.stderr
    imported = set(result.stdout.split())
    # Every module file of the plain packages was really imported (none skipped by accident).
    expected = {'edge_infer_ros.' + '.'.join(p.relative_to(ROOT / 'edge_infer_ros')
                                              .with_suffix('').parts)
                for package in PLAIN_PACKAGES
                for p in (ROOT / 'edge_infer_ros' / package).rglob('*.py')}
    expected = {name.removesuffix('.__init__') for name in expected}
    assert expected <= imported, sorted(expected - imported)


def test_the_probe_really_blocks_ros() -> None:
    """Without this, a broken blocker would let the test above pass vacuously."""
    probe = _PROBE.replace('for package in sys.argv[1:]:',
                           "importlib.import_module('edge_infer_ros.ros.convert')\n"
                           'for package in sys.argv[1:]:')
    result = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert 'blocked by the boundary test' in result.stderr


#: What each layer may import from the package (itself included); docs/architecture.md.
ALLOWED_IMPORTS = {
    'core': {'core'},
    'inference': {'core', 'inference'},
    'stages': {'core', 'inference', 'stages'},
    'monitor': {'core', 'inference', 'monitor'},
}


def _package_imports(path: Path) -> set[str]:
    """Return the edge_infer_ros subpackages a module imports (from its syntax tree)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        names = ([node.module or ''] if isinstance(node, ast.ImportFrom) else
                 [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split('.')
            if parts[0] == 'edge_infer_ros' and len(parts) > 1:
                found.add(parts[1])
    return found


def test_imports_point_down_only() -> None:
    wrong = {}
    for layer, allowed in ALLOWED_IMPORTS.items():
        for path in (ROOT / 'edge_infer_ros' / layer).rglob('*.py'):
            extra = _package_imports(path) - allowed
            if extra:
                wrong[str(path.relative_to(ROOT))] = sorted(extra)
    assert not wrong, wrong


def test_the_layer_check_sees_an_upward_import(tmp_path) -> None:
    module = tmp_path / 'upward.py'
    module.write_text('from edge_infer_ros.ros import convert\nimport edge_infer_ros.monitor\n')
    assert _package_imports(module) == {'ros', 'monitor'}


def _module_name(path: Path, top: Path) -> str:
    parts = path.relative_to(top).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _module_graph_at(top: Path) -> dict[str, set[str]]:
    """Return which package modules each module imports, function-level imports included."""
    paths = {_module_name(p, top): p for p in (top / 'edge_infer_ros').rglob('*.py')}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    whole = f'{node.module}.{alias.name}'
                    found.add(whole if whole in paths else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """Return one import cycle of the graph ([] when there is none)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return path[path.index(imported):] + [imported]
            if imported not in state:
                found = visit(imported)
                if found:
                    return found
        state[module] = 2
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return []


def test_no_import_cycle_in_the_package() -> None:
    """A module that imports one importing it back is one module in two files."""
    cycle = _cycle(_module_graph_at(ROOT))
    assert not cycle, ' -> '.join(cycle)


def test_the_cycle_check_sees_a_cycle(tmp_path) -> None:
    package = tmp_path / 'edge_infer_ros'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / 'a.py').write_text('def f():\n    from edge_infer_ros import b\n')
    (package / 'b.py').write_text('import edge_infer_ros.a\n')
    assert _cycle(_module_graph_at(tmp_path)) == ['edge_infer_ros.a', 'edge_infer_ros.b',
                                                  'edge_infer_ros.a']

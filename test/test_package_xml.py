"""
package.xml declares what the code imports, and rosdep can resolve every key on each distro.

``rosdep install --from-paths src/edge_infer_ros src/edge_infer_ros/msg --ignore-src -y`` (the
README's command) resolves a key when it names a package of the workspace, a package the
distribution releases, a rosdep rule of rosdistro, or a rule of a source the README adds
(``rosdep/edge_infer_ros.yaml``). The rosdistro part is checked against
``data/rosdistro_snapshot.yaml`` (made by ``scripts/rosdistro_snapshot.py``) for Humble, Jazzy
and Kilted on Ubuntu.
"""

from __future__ import annotations

import ast
from pathlib import Path
import sys
from typing import Optional

from catkin_pkg.package import parse_package
import pytest
from setuptools import find_packages
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = yaml.safe_load((ROOT / 'test' / 'data' / 'rosdistro_snapshot.yaml').read_text())
OWN_RULES = yaml.safe_load((ROOT / 'rosdep' / 'edge_infer_ros.yaml').read_text())
DISTROS = ('humble', 'jazzy', 'kilted')
#: Python modules -> rosdep keys (ROS packages are imported by their own name).
KEYS = {
    'numpy': 'python3-numpy', 'cv2': 'python3-opencv', 'yaml': 'python3-yaml',
    'onnxruntime': 'python3-onnxruntime-pip', 'onnx': 'python3-onnx-pip',
    'rosbags': 'python3-rosbags-pip',
    'psutil': 'python3-psutil', 'matplotlib': 'python3-matplotlib', 'pytest': 'python3-pytest',
    'hypothesis': 'python3-hypothesis', 'lxml': 'python3-lxml',
    'catkin_pkg': 'python3-catkin-pkg', 'setuptools': 'python3-setuptools',
}
ROS_PACKAGES = {'rclpy', 'launch', 'launch_ros', 'ament_index_python', 'builtin_interfaces',
                'rcl_interfaces', 'composition_interfaces', 'ament_flake8', 'ament_pep257'}
#: Imports that need no key: optional extras, the project's own modules and test helpers.
NO_KEY = {
    'tensorrt': 'optional GPU backend, from JetPack / NVIDIA (no rosdep key)',
    'pycuda': 'optional GPU backend, from JetPack / NVIDIA (no rosdep key)',
    'torch': 'models/train_detector.py only, a development script',
    'iceoryx2': 'optional same-host transport from PyPI (no rosdep key); without it DDS, '
                'with a diagnostic',
    'edge_infer_ros': 'this package', 'bench': 'the benchmarks, run from the source tree',
    'support': "the tests' shared helpers (test/support)",
    'pipeline': 'the pipeline tests (test/pipeline): the real-tools harness is shared',
    'rclpy_surface': 'test helper', 'rclpy_humble_sim': 'test helper',
}


def _imports(*dirs: str) -> dict[str, str]:
    """Return top-level modules imported under ``dirs`` (not the standard library): a file each."""
    found: dict[str, str] = {}
    for directory in dirs:
        for path in sorted((ROOT / directory).rglob('*.py')):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split('.')[0]
                    if top not in sys.stdlib_module_names:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _key(module: str) -> Optional[str]:
    if module in NO_KEY:
        return None
    if module in KEYS:
        return KEYS[module]
    if module.endswith('_msgs') or module in ROS_PACKAGES:
        return module
    raise AssertionError(f'no rosdep key known for module {module!r}: add it to package.xml '
                         'and to KEYS in this test')


@pytest.fixture(scope='module')
def manifest():
    return parse_package(str(ROOT / 'package.xml'))


def _names(depends) -> set[str]:
    return {d.name for d in depends}


def test_every_runtime_import_is_an_exec_depend(manifest) -> None:
    exec_keys = _names(manifest.exec_depends)
    missing = {m: (path, _key(m)) for m, path in _imports('edge_infer_ros', 'launch').items()
               if _key(m) and _key(m) not in exec_keys}
    assert not missing, f'imported at run time but not an exec_depend: {missing}'


def test_every_test_import_is_declared(manifest) -> None:
    declared = _names(manifest.exec_depends) | _names(manifest.test_depends)
    missing = {m: (path, _key(m)) for m, path in _imports('test', 'bench', 'scripts').items()
               if _key(m) and _key(m) not in declared}
    assert not missing, f'imported by tests, bench or scripts but not declared: {missing}'


def test_no_exec_depend_is_left_over(manifest) -> None:
    used = {_key(m) for m in _imports('edge_infer_ros', 'launch')} - {None}
    extra = _names(manifest.exec_depends) - used
    assert not extra, f'exec_depends nothing imports: {sorted(extra)}'


def _resolves(key: str, distro: str, workspace: set[str]) -> bool:
    if key in workspace:
        return True
    if key in SNAPSHOT['distributions'][distro]['packages']:
        return True
    rule = SNAPSHOT['rosdep'].get(key) or OWN_RULES.get(key)
    return bool(rule) and 'ubuntu' in rule and 'debian' in rule


@pytest.mark.parametrize('distro', DISTROS)
def test_every_key_resolves_on_the_distribution(distro: str) -> None:
    assert SNAPSHOT['distributions'][distro]['ubuntu'], distro
    manifests = [parse_package(str(ROOT / 'package.xml')),
                 parse_package(str(ROOT / 'msg' / 'package.xml'))]
    workspace = {m.name for m in manifests}
    unresolved = []
    for package in manifests:
        for group in (package.buildtool_depends, package.build_depends,
                      package.build_export_depends, package.exec_depends, package.test_depends):
            unresolved += [f'{package.name}: {d.name}' for d in group
                           if not _resolves(d.name, distro, workspace)]
    assert not unresolved, (f'{distro}: rosdep cannot resolve {unresolved} (regenerate '
                            'test/data/rosdistro_snapshot.yaml, or define the key in '
                            'rosdep/edge_infer_ros.yaml)')


def test_own_rosdep_rules_are_only_for_keys_rosdistro_lacks() -> None:
    assert set(OWN_RULES).isdisjoint(SNAPSHOT['rosdep'])
    for key, rule in OWN_RULES.items():
        assert rule['ubuntu'] == {'pip': {'packages': [key[len('python3-'):-len('-pip')]]}}


def test_the_check_fails_on_an_unknown_key() -> None:
    assert not _resolves('python3-no-such-thing', 'humble', set())
    assert not _resolves('rclpy_but_misspelt', 'jazzy', set())
    assert _resolves('rclpy', 'kilted', set()) and _resolves('python3-onnx-pip', 'humble', set())


def test_setup_installs_only_the_package() -> None:
    tree = ast.parse((ROOT / 'setup.py').read_text())
    [call] = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and
              getattr(n.func, 'id', '') == 'find_packages']
    packages = find_packages(str(ROOT), **{k.arg: ast.literal_eval(k.value)
                                           for k in call.keywords})
    assert 'edge_infer_ros' in packages and 'edge_infer_ros.ros.nodes' in packages
    assert all(p == 'edge_infer_ros' or p.startswith('edge_infer_ros.') for p in packages), \
        packages

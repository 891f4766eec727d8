"""The ROS boundary is a checked fact: the plain packages import with every ROS module blocked."""

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

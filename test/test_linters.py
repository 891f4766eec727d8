"""The ament linters that fit a Python package: flake8, pep257 and xmllint."""

from pathlib import Path
import subprocess
import sys

from catkin_pkg.package import parse_package
from lxml import etree
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_PATHS = [str(ROOT / p) for p in
                ('edge_infer_ros', 'test', 'bench', 'models', 'launch', 'scripts', 'setup.py')
                if (ROOT / p).exists()]
PACKAGE_XMLS = [ROOT / 'package.xml', ROOT / 'msg' / 'package.xml']


def _run_linter(module: str) -> subprocess.CompletedProcess:
    """
    Run an ament linter in a fresh interpreter.

    flake8 checks files in a fork()ed multiprocessing pool. Forking this test process, which
    by then holds rclpy and DDS threads from earlier tests, crashes the children in their
    garbage collector and the pool respawns them forever; a clean interpreter has no threads.
    """
    return subprocess.run([sys.executable, '-m', module, *PYTHON_PATHS], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.linter
def test_flake8() -> None:
    result = _run_linter('ament_flake8.main')
    assert result.returncode == 0, f'flake8 found problems:\n{result.stdout}{result.stderr}'


@pytest.mark.linter
def test_pep257() -> None:
    result = _run_linter('ament_pep257.main')
    assert result.returncode == 0, f'pep257 found problems:\n{result.stdout}{result.stderr}'


#: ROS-free packages: every stage's logic, checked strictly.
STRICT_TYPED = [str(ROOT / 'edge_infer_ros' / p)
                for p in ('core', 'stages', 'inference', 'monitor')]


@pytest.mark.linter
def test_mypy_strict_on_the_plain_packages() -> None:
    result = subprocess.run([sys.executable, '-m', 'mypy', '--strict', *STRICT_TYPED],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'mypy found problems:\n{result.stdout}{result.stderr}'


@pytest.mark.linter
def test_mypy_on_the_ros_side() -> None:
    """Nodes, container and runner: checked, Optional lifecycle state aside (setup.cfg)."""
    result = subprocess.run([sys.executable, '-m', 'mypy', str(ROOT / 'edge_infer_ros' / 'ros'),
                             str(ROOT / 'edge_infer_ros' / 'runner.py')],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'mypy found problems:\n{result.stdout}{result.stderr}'


@pytest.mark.linter
@pytest.mark.parametrize('path', PACKAGE_XMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_xmllint_package_xml(path: Path) -> None:
    # Well-formed XML (what xmllint checks first) ...
    tree = etree.parse(str(path))
    assert tree.getroot().tag == 'package'
    assert tree.getroot().get('format') == '3'
    # ... and a valid format-3 manifest by the rules colcon and rosdep apply.
    package = parse_package(str(path))
    package.validate()

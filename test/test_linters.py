"""The ament linters that fit a Python package: flake8, pep257 and xmllint."""

from pathlib import Path

from ament_flake8.main import main_with_errors as flake8_main
from ament_pep257.main import main as pep257_main
from catkin_pkg.package import parse_package
from lxml import etree
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_PATHS = [str(ROOT / p) for p in
                ('edge_infer_ros', 'test', 'bench', 'models', 'launch', 'scripts', 'setup.py')
                if (ROOT / p).exists()]
PACKAGE_XMLS = [ROOT / 'package.xml', ROOT / 'msg' / 'package.xml']


@pytest.mark.linter
def test_flake8() -> None:
    rc, errors = flake8_main(argv=PYTHON_PATHS)
    assert rc == 0, f'flake8 found {len(errors)} problem(s):\n' + '\n'.join(errors)


@pytest.mark.linter
def test_pep257() -> None:
    rc = pep257_main(argv=PYTHON_PATHS)
    assert rc == 0, 'pep257 found problems (see output above)'


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

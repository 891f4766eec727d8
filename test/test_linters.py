"""The ament linters that fit a Python package (flake8, pep257, xmllint), mypy, one style."""

import ast
from pathlib import Path
import subprocess
import sys
from typing import Iterator, Optional

from catkin_pkg.package import parse_package
from lxml import etree
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_PATHS = [str(ROOT / p) for p in
                ('edge_infer_ros', 'test', 'bench', 'models', 'launch', 'examples', 'scripts',
                 'setup.py')
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
    """Nodes, container, runner and runs: checked, Optional lifecycle state aside (setup.cfg)."""
    result = subprocess.run([sys.executable, '-m', 'mypy', str(ROOT / 'edge_infer_ros' / 'ros'),
                             str(ROOT / 'edge_infer_ros' / 'runner.py'),
                             str(ROOT / 'edge_infer_ros' / 'runs')],
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


def _annotations(tree: ast.AST) -> Iterator[ast.expr]:
    """Yield every annotation of a module: arguments, returns, annotated assignments."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg,
                        args.kwarg):
                if arg is not None and arg.annotation is not None:
                    yield arg.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _style_problem(annotation: ast.expr) -> Optional[str]:
    """Say what breaks the one optional style in an annotation (quoted ones too), or None."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode='eval').body
        except SyntaxError:
            return None
    for node in ast.walk(annotation):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return 'X | Y: write Optional[X] (with None) or Union[X, Y]'
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and \
                node.value.id == 'Union' and isinstance(node.slice, ast.Tuple) and \
                any(isinstance(e, ast.Constant) and e.value is None for e in node.slice.elts):
            return 'Union[..., None]: write Optional[Union[...]]'
    return None


def _style_problems(source: str, name: str) -> list[str]:
    tree = ast.parse(source, filename=name)
    return [f'{name}:{a.lineno}: {ast.get_source_segment(source, a)}: {problem}'
            for a in _annotations(tree) for problem in [_style_problem(a)] if problem]


@pytest.mark.linter
def test_one_optional_style() -> None:
    """Optional[X] and Union[X, Y] everywhere: no X | None (the code had both)."""
    files = [f for p in PYTHON_PATHS for f in
             (sorted(Path(p).rglob('*.py')) if Path(p).is_dir() else [Path(p)])]
    problems = [problem for f in files
                for problem in _style_problems(f.read_text(encoding='utf-8'), str(f))]
    assert len(files) > 50 and not problems, '\n'.join(problems)


@pytest.mark.parametrize('source', [
    'def f(x: int | None) -> None: ...',
    'def f() -> dict[str, float | None]: ...',
    'x: "BudgetConfig | None" = None',
    'def f(*args: int | str, **kwargs: bytes | None) -> None: ...',
    'def f(x: Union[str, None]) -> None: ...',
    'class A:\n    def f(self, x: Optional[int | str]) -> None: ...',
])
def test_the_optional_style_check_finds(source: str) -> None:
    assert _style_problems(source, 'example.py')


def test_the_optional_style_check_accepts() -> None:
    source = ('def f(x: Optional[int], y: Union[int, str], z: Optional[Union[int, str]] = None'
              ') -> dict[str, Optional[float]]:\n    return {"a": x | y}\nflags = 1 | 2\n')
    assert _style_problems(source, 'example.py') == []

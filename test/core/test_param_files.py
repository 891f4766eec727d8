"""A parameter file that does not parse is told in one line: file, line, column, problem."""

from __future__ import annotations

from pathlib import Path

from edge_infer_ros.core.params import param_file_error, params_files_in
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('text, where', [
    ('/**:\n  ros__parameters:\n    fps: [1, 2\n    seed: 3\n', ':4:9:'),
    ('a:\n  b: 1\n c: 2\n', ':3:2:'),
    ('a: "open\n', ':2:1:'),
    ('a: 1\n\tb: 2\n', ':2:1:'),
])
def test_syntax_error_names_file_line_and_column(tmp_path: Path, text: str,
                                                 where: str) -> None:
    path = tmp_path / 'bad.yaml'
    path.write_text(text, encoding='utf-8')
    problem = param_file_error(str(path))
    assert problem is not None and problem.startswith(f'{path}{where} YAML syntax error')
    assert '\n' not in problem


def test_unreadable_and_binary_files_are_one_line(tmp_path: Path) -> None:
    missing = param_file_error(str(tmp_path / 'none.yaml'))
    assert missing is not None and 'cannot read' in missing and '\n' not in missing
    binary = tmp_path / 'bin.yaml'
    binary.write_bytes(b'a: \xff\xfe\n')
    problem = param_file_error(str(binary))
    assert problem is not None and 'not UTF-8' in problem


def test_shipped_files_parse() -> None:
    for name in ('pipeline.yaml', 'budget.yaml'):
        assert param_file_error(str(ROOT / 'config' / name)) is None


def test_params_files_of_a_command_line() -> None:
    argv = ['x', '--ros-args', '--params-file', 'a.yaml', '-p', 'b:=1', '--params-file', 'c.yaml']
    assert params_files_in(argv) == ['a.yaml', 'c.yaml']
    assert params_files_in(['x', '--params-file']) == []

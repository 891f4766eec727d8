"""Parameter specs (validation, docs) and parameter files (a bad one told in one line)."""

from __future__ import annotations

from pathlib import Path

from edge_infer_ros.core.params import markdown_table, param_file_error, params_files_in, \
    ParamSpec, spec_map, validate_updates
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


def test_param_spec_validation_reasons() -> None:
    spec = ParamSpec('score', 0.5, 'x', low=0.0, high=1.0)
    assert spec.validate(0.7) is None
    assert 'must be <= 1' in spec.validate(1.5)
    assert 'must be a number' in spec.validate('high')
    assert 'finite' in spec.validate(float('nan'))
    choice = ParamSpec('backend', 'onnxruntime', 'x', choices=('onnxruntime', 'tensorrt'))
    assert 'one of' in choice.validate('cuda')
    listed = ParamSpec('classes', ['ball'], 'x', list_of=str)
    assert listed.validate(['a', 'b']) is None and 'strings' in listed.validate(['a', 3])
    counted = ParamSpec('depth', 1, 'x', low=1)
    assert 'integer' in counted.validate(1.5) and 'integer' in counted.validate(True)
    with pytest.raises(ValueError):
        ParamSpec('bad_list', [], 'x')  # a list must say its item type


def test_runtime_only_parameters_refused_while_active() -> None:
    specs = spec_map([ParamSpec('model_path', '', 'x', runtime=False),
                      ParamSpec('score', 0.5, 'x', low=0.0, high=1.0)])
    assert validate_updates(specs, {'model_path': '/m.onnx'}, active=False) is None
    assert 'while the node is active' in validate_updates(specs, {'model_path': '/m.onnx'},
                                                          active=True)
    assert validate_updates(specs, {'score': 0.3, 'use_sim_time': True}, active=True) is None
    with pytest.raises(ValueError):
        spec_map([ParamSpec('a', 1, 'x'), ParamSpec('a', 2, 'x')])


def test_markdown_table_lists_every_spec() -> None:
    table = markdown_table('node', [ParamSpec('fps', 30.0, 'rate', low=0.1, high=1000.0),
                                    ParamSpec('source', 'synthetic', 's', choices=('a', 'b'),
                                              runtime=False)])
    assert '| `fps` | double | `30` | [0.1, 1000] | yes | rate |' in table
    assert "| `source` | string | `'synthetic'` | a \\| b | no | s |" in table

"""
A parameter file that does not parse, given to the real entry points: one line, exit code 2.

The node executables and the container get it with ``--ros-args --params-file`` (as ``ros2
run`` and ``ros2 launch`` pass it), the runner with ``--config``/``--budget``. A YAML syntax
error is named by file, line and column; what rcl refuses beyond syntax (a list of mixed
types) in rcl's own words. Before, each was a Python traceback (exit code 1).
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import pytest

SYNTAX = '/**:\n  ros__parameters:\n    fps: [1, 2\n    seed: 3\n'
MIXED = '/**:\n  ros__parameters:\n    fps: [1, "a"]\n'
ENV = dict(os.environ, ROS_DOMAIN_ID=str(os.environ.get('ROS_DOMAIN_ID') or 0))


def executable(name: str) -> str:
    """Return the installed path of one of the package's executables."""
    from ament_index_python.packages import get_package_prefix
    return os.path.join(get_package_prefix('edge_infer_ros'), 'lib', 'edge_infer_ros', name)


def commands(path: str) -> dict[str, list[str]]:
    return {
        'camera_node': [executable('camera_node'), '--ros-args', '--params-file', path],
        'container (ros args)': [executable('component_container'),
                                 'edge_infer_ros::Camera:camera',
                                 '--ros-args', '--params-file', path],
        'container (own option)': [executable('component_container'),
                                   'edge_infer_ros::Camera:camera', '--params-file', path],
        'runner --config': [sys.executable, '-m', 'edge_infer_ros.runner', '--frames', '3',
                            '--config', path],
        'runner --budget': [sys.executable, '-m', 'edge_infer_ros.runner', '--frames', '3',
                            '--budget', path],
    }


@pytest.mark.parametrize('entry', list(commands('x')))
@pytest.mark.parametrize('content, expected', [
    (SYNTAX, ':4:9: YAML syntax error'),
    (MIXED, 'Sequence should be of same type'),
], ids=['yaml-syntax', 'rcl-refuses'])
def test_bad_parameter_file_is_one_line_and_exit_code_2(
        tmp_path: Path, entry: str, content: str, expected: str) -> None:
    path = tmp_path / 'bad.yaml'
    path.write_text(content, encoding='utf-8')
    done = subprocess.run(commands(str(path))[entry], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120, env=ENV)
    assert done.returncode == 2, done.stderr
    assert 'Traceback' not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], done.stderr

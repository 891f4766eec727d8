"""
Print the test files that run without ROS: for the oldest-numerics step of scripts/test.sh.

A file qualifies when its top-level imports name no rclpy, no ``*_msgs``, no launch, not the
package's ``ros`` layer, runner or runs, not ``conftest`` (which starts ROS), no test in it
takes a fixture that conftest.py defines, and it names no ROS tool it would start or import later
(rclpy, the ament linters, catkin_pkg, the ROS benchmarks). Chosen by reading the files, so
new ROS-free tests join the step by themselves.
"""

import ast
from pathlib import Path
import sys

TEST = Path(__file__).resolve().parents[1] / 'test'
#: Names that mark a file as needing ROS even without a top-level import of it.
ROS_WORDS = ('rclpy', 'ament_', 'catkin_pkg', 'bench.suite', 'bench.hop')
ROS_MODULES = ('rclpy', 'launch', 'launch_ros', 'support.waiting', 'edge_infer_ros.ros',
               'edge_infer_ros.runner', 'edge_infer_ros.runs', 'ament_index_python')


def _is_ros(module: str) -> bool:
    return module.split('.')[0].endswith('_msgs') or any(
        module == m or module.startswith(m + '.') for m in ROS_MODULES)


def _fixtures(conftest: Path) -> set[str]:
    names = set()
    for node in ast.parse(conftest.read_text()).body:
        if isinstance(node, ast.FunctionDef) and any(
                'fixture' in ast.unparse(d) for d in node.decorator_list):
            names.add(node.name)
    return names


def ros_free(path: Path, fixtures: set[str]) -> bool:
    """Return whether a test file needs neither ROS nor conftest.py's fixtures."""
    text = path.read_text()
    if any(word in text for word in ROS_WORDS):
        return False
    tree = ast.parse(text)
    for node in tree.body:
        modules = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        if any(_is_ros(m) for m in modules):
            return False
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            if {a.arg for a in node.args.args} & fixtures:
                return False
    return True


def main() -> int:
    """Print the ROS-free test files, one a line; fail if there are none."""
    fixtures = _fixtures(TEST / 'conftest.py')
    files = [p for p in sorted(TEST.rglob('test_*.py')) if ros_free(p, fixtures)]
    for path in files:
        print(path.relative_to(TEST.parent))
    return 0 if files else 1


if __name__ == '__main__':
    sys.exit(main())

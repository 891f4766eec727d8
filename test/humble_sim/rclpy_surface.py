"""
The public surface of an rclpy source tree: its modules, their names, class members, parameters.

``rclpy_humble_surface.json`` beside this file was made by this module from ros2/rclpy's
``humble`` branch; comparing it with the installed rclpy gives what Iron and later added, which
the Humble simulation hides and the static check forbids. Regenerate it from a clone with::

    python test/humble_sim/rclpy_surface.py git /path/to/rclpy humble > \
        test/humble_sim/rclpy_humble_surface.json
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
import subprocess
import sys
from typing import Any, Iterator, Union

HERE = Path(__file__).resolve().parent
HUMBLE_SURFACE = HERE / 'rclpy_humble_surface.json'

Surface = dict[str, dict[str, Any]]


def _params(function: Union[ast.FunctionDef, ast.AsyncFunctionDef]) -> list[str]:
    args = function.args
    return [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Yield a module's statements, looking into top-level if/try blocks (optional imports)."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _top_level(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from _top_level(node.body + node.orelse + node.finalbody +
                                  [s for h in node.handlers for s in h.body])


def module_surface(source: str) -> dict[str, Any]:
    """Return the public names of one module, and of each class its members and parameters."""
    names: set[str] = set()
    classes: dict[str, Any] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            members: set[str] = set()
            params: dict[str, list[str]] = {}
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                    params[item.name] = _params(item)
                elif isinstance(item, ast.Assign):
                    members.update(t.id for t in item.targets if isinstance(t, ast.Name))
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            classes[node.name] = {
                'members': sorted(m for m in members if not m.startswith('_')),
                'params': {k: v for k, v in sorted(params.items())
                           if not k.startswith('_') or k == '__init__'}}
    for node in _top_level(ast.parse(source).body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split('.')[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {'names': sorted(n for n in names if not n.startswith('_') and n != '*'),
            'classes': {k: v for k, v in sorted(classes.items()) if not k.startswith('_')}}


def _module_name(relative: str) -> str:
    parts = ['rclpy'] + relative[:-len('.py')].split('/')
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _sources_in_dir(package_dir: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(package_dir.rglob('*.py')):
        yield path.relative_to(package_dir).as_posix(), path.read_text()


def _sources_in_git(clone: str, ref: str) -> Iterator[tuple[str, str]]:
    listing = subprocess.check_output(['git', '-C', clone, 'ls-tree', '-r', '--name-only', ref,
                                       'rclpy/rclpy'], text=True).split()
    for name in listing:
        if name.endswith('.py'):
            text = subprocess.check_output(['git', '-C', clone, 'show', f'{ref}:{name}'],
                                           text=True)
            yield name[len('rclpy/rclpy/'):], text


def surface_of_dir(package_dir: Path) -> Surface:
    """Return the surface of an installed rclpy package directory."""
    return {_module_name(rel): module_surface(text) for rel, text in _sources_in_dir(package_dir)}


def installed_surface() -> Surface:
    """Return the surface of the rclpy this interpreter imports."""
    import rclpy
    return surface_of_dir(Path(rclpy.__file__).parent)


def humble_surface() -> Surface:
    """Return Humble's surface, as recorded in the JSON file beside this module."""
    return json.loads(HUMBLE_SURFACE.read_text())['modules']


def main(argv: list[str]) -> int:
    """Print the surface of ``dir PATH`` or ``git CLONE REF`` as JSON."""
    if len(argv) == 2 and argv[0] == 'dir':
        modules, origin = surface_of_dir(Path(argv[1])), argv[1]
    elif len(argv) == 3 and argv[0] == 'git':
        modules = {_module_name(rel): module_surface(text)
                   for rel, text in _sources_in_git(argv[1], argv[2])}
        commit = subprocess.check_output(['git', '-C', argv[1], 'rev-parse', argv[2]],
                                         text=True).strip()
        origin = f'ros2/rclpy {argv[2]} @ {commit}'
    else:
        print(__doc__, file=sys.stderr)
        return 2
    json.dump({'origin': origin, 'modules': modules}, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

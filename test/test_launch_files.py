"""
Check the launch files without launching them: launch and launch_ros are not installed here.

Each file under launch/ is read with :mod:`ast` (never imported) and evaluated symbolically:
module and function assignments, ``LaunchConfiguration``, ``PathJoinSubstitution``,
``FindPackageShare``, ``ParameterValue``, ``DeclareLaunchArgument``, ``GroupAction``,
``PushRosNamespace`` and ``launch_ros.actions.Node``. Anything else (loops, conditions,
arithmetic) is refused: the launch files hold no logic of their own.

From that come the nodes each file starts (executable, node name, plugins loaded by the
component container, parameter files, parameter overrides, remaps) and its launch arguments.
They are checked against setup.py, the installed package, config/ and the node classes' declared
parameters, and compared with :data:`edge_infer_ros.ros.graph.PIPELINE` and with what the runner
starts (``component_specs(RunOptions())`` and ``SPLIT_GROUPS`` of :mod:`edge_infer_ros.runner`),
so ``ros2 launch`` and ``ros2 run edge_infer_ros pipeline`` run the same graph.

Finally the ROS arguments ``ros2 launch`` would give each process are rebuilt the way launch_ros
builds them and handed to the real node classes, which shows that the overrides win over the
parameter files and that every file's values arrive.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from importlib.metadata import entry_points
import os
from pathlib import Path
import re
from typing import Any, Optional

from edge_infer_ros.core.params import flatten_parameters
from edge_infer_ros.core.resources import share_dir
from edge_infer_ros.ros.container import ComponentSpec, Container, parse_component
from edge_infer_ros.ros.graph import COMPONENT_GROUP, load_plugin, PIPELINE
from edge_infer_ros.runner import component_specs, RunOptions, SPLIT_GROUPS
import pytest
import rclpy
from rclpy.utilities import remove_ros_args
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_DIR = ROOT / 'launch'
CONFIG_DIR = ROOT / 'config'
PACKAGE = 'edge_infer_ros'
CONTAINER = 'component_container'
COMPOSED = 'pipeline.launch.py'
SPLIT = 'pipeline_split.launch.py'
MONITOR = 'budget_monitor.launch.py'
LAUNCH_FILES = sorted(p.name for p in LAUNCH_DIR.glob('*.launch.py'))
BY_NAME = {spec.name: spec for spec in PIPELINE}

#: What a launch file may call, by qualified name (anything else is refused).
LAUNCH_CONFIGURATION = 'launch.substitutions.LaunchConfiguration'
PATH_JOIN = 'launch.substitutions.PathJoinSubstitution'
FIND_PACKAGE_SHARE = 'launch_ros.substitutions.FindPackageShare'
PARAMETER_VALUE = 'launch_ros.parameter_descriptions.ParameterValue'
LAUNCH_DESCRIPTION = 'launch.LaunchDescription'
DECLARE_ARGUMENT = 'launch.actions.DeclareLaunchArgument'
GROUP_ACTION = 'launch.actions.GroupAction'
PUSH_NAMESPACE = 'launch_ros.actions.PushRosNamespace'
NODE = 'launch_ros.actions.Node'
KNOWN_CALLS = {LAUNCH_CONFIGURATION, PATH_JOIN, FIND_PACKAGE_SHARE, PARAMETER_VALUE,
               LAUNCH_DESCRIPTION, DECLARE_ARGUMENT, GROUP_ACTION, PUSH_NAMESPACE, NODE}
TYPE_NAMES = {'str': str, 'int': int, 'float': float, 'bool': bool}


class LaunchFileError(Exception):
    """A launch file uses something this reader does not evaluate (logic, unknown calls)."""


# -- symbolic values ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Arg:
    """``LaunchConfiguration(name)``."""

    name: str


@dataclass(frozen=True)
class Share:
    """``FindPackageShare(package)``."""

    package: str


@dataclass(frozen=True)
class Join:
    """``PathJoinSubstitution([...])``."""

    parts: tuple


@dataclass(frozen=True)
class Typed:
    """``ParameterValue(value, value_type=...)``."""

    value: Any
    value_type: Optional[type]


@dataclass
class Call:
    """Any other allowed call: an action or the launch description."""

    func: str
    args: list
    kwargs: dict


@dataclass
class Declared:
    """A declared launch argument."""

    name: str
    default: Any
    choices: Optional[tuple[str, ...]]


@dataclass
class LaunchNode:
    """One process a launch file starts (a launch_ros Node)."""

    package: Any
    executable: Any
    name: Any
    namespace: Any
    arguments: list
    parameters: list
    remaps: list

    @property
    def param_files(self) -> list:
        """Return the parameter entries that are files (everything but dicts)."""
        return [p for p in self.parameters if not isinstance(p, dict)]

    @property
    def overrides(self) -> dict[str, Any]:
        """Return the parameter values set in the launch file, later dicts winning."""
        result: dict[str, Any] = {}
        for entry in self.parameters:
            if isinstance(entry, dict):
                result.update(entry)
        return result


@dataclass
class Started:
    """One node as the launch file starts it: a process of its own or a container component."""

    name: str
    plugin: Optional[str]
    executable: str
    param_files: tuple[str, ...]
    remaps: tuple[tuple[str, str], ...]
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class LaunchFile:
    """What one launch file declares and starts."""

    path: Path
    arguments: dict[str, Declared]
    nodes: list[LaunchNode]
    used_arguments: set[str]

    def resolve(self, value: Any) -> Any:
        """Replace a launch argument by its default (what a plain ``ros2 launch`` uses)."""
        seen = set()
        while isinstance(value, Arg):
            if value.name in seen or value.name not in self.arguments:
                return value
            seen.add(value.name)
            value = self.arguments[value.name].default
        return value

    def config_file(self, entry: Any) -> Optional[str]:
        """Return the file of config/ a parameter entry names by default, or None."""
        value = self.resolve(entry)
        if isinstance(value, Join) and len(value.parts) == 3 and \
                value.parts[0] == Share(PACKAGE) and value.parts[1] == 'config' and \
                isinstance(value.parts[2], str):
            return value.parts[2]
        return None

    def containers(self) -> list[LaunchNode]:
        """Return the nodes that run the component container."""
        return [n for n in self.nodes if n.executable == CONTAINER]

    def started(self) -> list[Started]:
        """Return every node the file starts, components of containers included, in order."""
        result = []
        for node in self.nodes:
            files = tuple(self.config_file(p) or repr(p) for p in node.param_files)
            remaps = tuple((self.resolve(a), self.resolve(b)) for a, b in node.remaps)
            if node.executable != CONTAINER:
                result.append(Started(node.name, None, node.executable, files, remaps,
                                      node.overrides))
                continue
            # The container's parameter files are global ROS arguments: keyed by node name,
            # each applies to the components it has a section for.
            for text in component_arguments(node):
                plugin, name = split_component(text)
                own = tuple(f for f in files if name in yaml_sections(f))
                result.append(Started(name, plugin, CONTAINER, own, remaps, node.overrides))
        return result


# -- reading a launch file ----------------------------------------------------------------------
class _Evaluator:
    """Evaluate the expressions of a launch file symbolically."""

    def __init__(self, tree: ast.Module, function: ast.FunctionDef) -> None:
        self.imports: dict[str, str] = {}
        self.assignments: dict[str, ast.expr] = {}
        self.used_arguments: set[str] = set()
        for statement in list(tree.body) + list(function.body):
            if isinstance(statement, ast.ImportFrom) and statement.module:
                for alias in statement.names:
                    self.imports[alias.asname or alias.name] = f'{statement.module}.{alias.name}'
            elif isinstance(statement, ast.Import):
                for alias in statement.names:
                    self.imports[alias.asname or alias.name.split('.')[0]] = \
                        alias.name if alias.asname else alias.name.split('.')[0]
            elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
                targets = statement.targets if isinstance(statement, ast.Assign) \
                    else [statement.target]
                for target in targets:
                    if isinstance(target, ast.Name) and statement.value is not None:
                        self.assignments[target.id] = statement.value

    def qualified(self, node: ast.expr) -> str:
        """Return the imported name a call refers to (``Node`` -> launch_ros.actions.Node)."""
        if isinstance(node, ast.Name):
            return self.imports.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            return f'{self.qualified(node.value)}.{node.attr}'
        raise LaunchFileError(f'line {node.lineno}: cannot call {ast.dump(node)}')

    def evaluate(self, node: ast.expr) -> Any:
        """Evaluate one expression."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.evaluate(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise LaunchFileError(f'line {node.lineno}: ** in a dict')
            return {self.evaluate(k): self.evaluate(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Name):
            if node.id in self.assignments:
                return self.evaluate(self.assignments[node.id])
            if node.id in TYPE_NAMES:
                return TYPE_NAMES[node.id]
            raise LaunchFileError(f'line {node.lineno}: unknown name {node.id}')
        if isinstance(node, ast.Call):
            func = self.qualified(node.func)
            if func not in KNOWN_CALLS:
                raise LaunchFileError(f'line {node.lineno}: call of {func} (no logic in launch '
                                      'files; this test reads only the launch API)')
            args = [self.evaluate(a) for a in node.args]
            kwargs = {k.arg: self.evaluate(k.value) for k in node.keywords if k.arg}
            if len(kwargs) != len(node.keywords):
                raise LaunchFileError(f'line {node.lineno}: ** arguments')
            if func == LAUNCH_CONFIGURATION:
                self.used_arguments.add(args[0] if args else kwargs['variable_name'])
                return Arg(args[0] if args else kwargs['variable_name'])
            if func == FIND_PACKAGE_SHARE:
                return Share(args[0] if args else kwargs['package'])
            if func == PATH_JOIN:
                return Join(tuple(args[0] if args else kwargs['substitutions']))
            if func == PARAMETER_VALUE:
                return Typed(args[0] if args else kwargs['value'], kwargs.get('value_type'))
            return Call(func, args, kwargs)
        raise LaunchFileError(f'line {node.lineno}: {type(node).__name__} is logic; launch '
                              'files hold only launch API calls, names and literals')


def _collect(actions: list, namespace: Any, declared: dict[str, Declared],
             nodes: list[LaunchNode]) -> None:
    for action in actions:
        if not isinstance(action, Call):
            raise LaunchFileError(f'not a launch action: {action!r}')
        if action.func == DECLARE_ARGUMENT:
            name = action.args[0] if action.args else action.kwargs['name']
            choices = action.kwargs.get('choices')
            declared[name] = Declared(name, action.kwargs.get('default_value'),
                                      tuple(choices) if choices is not None else None)
        elif action.func == GROUP_ACTION:
            inner = action.args[0] if action.args else action.kwargs['actions']
            _collect(inner, namespace, declared, nodes)
        elif action.func == PUSH_NAMESPACE:
            namespace = action.args[0] if action.args else action.kwargs['namespace']
        elif action.func == NODE:
            kw = action.kwargs
            nodes.append(LaunchNode(
                kw.get('package'), kw.get('executable'), kw.get('name'),
                kw.get('namespace', namespace), list(kw.get('arguments') or []),
                list(kw.get('parameters') or []),
                [tuple(r) for r in kw.get('remappings') or []]))
        else:
            raise LaunchFileError(f'unexpected action {action.func}')


def read_launch_source(source: str, path: Path) -> LaunchFile:
    """Parse the text of a launch file and extract its arguments and nodes."""
    tree = ast.parse(source, filename=str(path))
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and
                 n.name == 'generate_launch_description']
    if len(functions) != 1:
        raise LaunchFileError(f'{path.name}: no generate_launch_description() at module level')
    returns = [n for n in functions[0].body if isinstance(n, ast.Return)]
    if len(returns) != 1 or returns[0].value is None:
        raise LaunchFileError(f'{path.name}: generate_launch_description() must end in '
                              'return LaunchDescription([...])')
    evaluator = _Evaluator(tree, functions[0])
    description = evaluator.evaluate(returns[0].value)
    if not isinstance(description, Call) or description.func != LAUNCH_DESCRIPTION:
        raise LaunchFileError(f'{path.name}: does not return a LaunchDescription')
    declared: dict[str, Declared] = {}
    nodes: list[LaunchNode] = []
    actions = description.args[0] if description.args else \
        description.kwargs.get('initial_entities', [])
    _collect(actions, None, declared, nodes)
    return LaunchFile(path, declared, nodes, evaluator.used_arguments)


def read_launch_file(name: str) -> LaunchFile:
    """Read one file of launch/."""
    path = LAUNCH_DIR / name
    return read_launch_source(path.read_text(encoding='utf-8'), path)


# -- what the rest of the package says ----------------------------------------------------------
def setup_entry_points() -> dict[str, dict[str, str]]:
    """Return the entry points setup.py declares: {group: {name: 'module:attr'}}."""
    tree = ast.parse((ROOT / 'setup.py').read_text(encoding='utf-8'))
    names = {t.id: s.value for s in tree.body if isinstance(s, ast.Assign)
             for t in s.targets if isinstance(t, ast.Name)}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, 'id', '') == 'setup':
            for keyword in call.keywords:
                if keyword.arg == 'entry_points':
                    groups = {}
                    for key, value in zip(keyword.value.keys, keyword.value.values):
                        if isinstance(value, ast.Name):
                            value = names[value.id]
                        entries = ast.literal_eval(value)
                        groups[ast.literal_eval(key)] = dict(
                            tuple(part.strip() for part in e.split('=', 1)) for e in entries)
                    return groups
    raise AssertionError('setup.py has no setup(entry_points=...)')


def install_prefix() -> Path:
    """Return where colcon installed the package (scripts/setup.sh builds it)."""
    try:
        from ament_index_python.packages import get_package_prefix
        return Path(get_package_prefix(PACKAGE))
    except Exception:  # noqa: B902 - not on the ament index: the checkout's install/
        return ROOT / 'install' / PACKAGE


def section_name(key: str) -> str:
    """Return the node name a parameter-file section is for (``/**/camera`` -> camera)."""
    return key.rsplit('/', 1)[-1] if key not in ('/**', '**') else '*'


def yaml_sections(file_name: str) -> set[str]:
    """Return the node names a file of config/ has sections for ('*' for every node)."""
    path = CONFIG_DIR / file_name
    if not path.is_file():
        return set()
    with open(path, encoding='utf-8') as stream:
        content = yaml.safe_load(stream) or {}
    names = {section_name(k) for k in content}
    return {spec.name for spec in PIPELINE} | names if '*' in names else names


def expected_node(spec: Any, composed: bool) -> Started:
    """Return how PIPELINE says a node is started, composed or as a process of its own."""
    return Started(spec.name, spec.plugin if composed else None,
                   CONTAINER if composed else spec.executable, tuple(spec.param_files),
                   tuple(spec.remaps))


def _key(node: Started) -> tuple:
    return (node.name, node.plugin, node.executable, node.param_files, node.remaps)


def split_component(text: str) -> tuple[str, str]:
    """
    Return (plugin, node name) of a container argument ``pkg::Class[:name]``.

    How component_container's command line is documented to read it; the name defaults to
    the class name in lower case. test_container_reads_plugin_arguments_as_written checks
    that the container really reads it so.
    """
    match = re.fullmatch(r'(?P<plugin>[^:]+(?:::[^:]+)+)(?::(?P<name>[^:]+))?', text)
    if match is None:
        raise ValueError(f'not plugin[:name]: {text!r}')
    plugin = match.group('plugin')
    return plugin, match.group('name') or plugin.split('::')[-1].lower()


def component_arguments(node: LaunchNode) -> list[str]:
    """Return the plugin[:name] arguments of a container node."""
    return [t for t in node.arguments if isinstance(t, str) and not t.startswith('-')]


# -- checks (each returns its problems, so a test can show that they find them) ----------------
def executable_problems(launch: LaunchFile) -> list[str]:
    """Return what is wrong: executables must be console scripts of setup.py, installed."""
    scripts = setup_entry_points().get('console_scripts', {})
    lib = install_prefix() / 'lib' / PACKAGE
    problems = []
    for node in launch.nodes:
        if node.package != PACKAGE:
            problems.append(f'{node.executable}: package {node.package!r}, not {PACKAGE!r}')
        if node.executable not in scripts:
            problems.append(f'{node.executable!r} is not a console_script of setup.py '
                            f'({", ".join(sorted(scripts))})')
        elif not os.access(lib / str(node.executable), os.X_OK):
            problems.append(f'{lib / str(node.executable)} is not installed (bash '
                            'scripts/setup.sh)')
    return problems


def plugin_problems(launch: LaunchFile) -> list[str]:
    """Return what is wrong: container arguments must name registered components only."""
    registered = {e.name for e in entry_points(group=COMPONENT_GROUP)}
    declared = set(setup_entry_points().get(COMPONENT_GROUP, {}))
    problems = []
    for node in launch.containers():
        if node.name is not None:
            problems.append(f'component_container has name={node.name!r}: a node name given '
                            'to the container renames every component in it')
        for text in node.arguments:
            if not isinstance(text, str) or text.startswith('-'):
                problems.append(f'container argument {text!r}: parameter files and '
                                'overrides go in parameters=[...] (global ROS arguments, in '
                                "order); the container's own --params-file is node-local "
                                'and would win over the overrides')
                continue
            try:
                plugin = split_component(text)[0]
            except ValueError as error:
                problems.append(str(error))
                continue
            if plugin not in registered or plugin not in declared:
                problems.append(f'plugin {plugin!r} is not an {COMPONENT_GROUP} entry point '
                                f'(installed: {sorted(registered)}; setup.py: '
                                f'{sorted(declared)})')
    return problems


def param_file_problems(launch: LaunchFile) -> list[str]:
    """Return what is wrong: parameter files must be files of config/, installed."""
    share = install_prefix() / 'share' / PACKAGE / 'config'
    problems = []
    for node in launch.nodes:
        for entry in node.param_files:
            name = launch.config_file(entry)
            if name is None:
                problems.append(f'{node.executable}: parameter file {entry!r} is not '
                                f'<share of {PACKAGE}>/config/<file>')
            elif not (CONFIG_DIR / name).is_file():
                problems.append(f'{node.executable}: config/{name} does not exist')
            elif not (share / name).is_file():
                problems.append(f'{share / name} is not installed (bash scripts/setup.sh)')
    return problems


def pipeline_problems(launch: LaunchFile, complete: bool) -> list[str]:
    """Return what is wrong: nodes, plugins, executables, files, remaps must be PIPELINE's."""
    composed = bool(launch.containers())
    started = launch.started()
    expected = [expected_node(spec, composed) for spec in PIPELINE]
    problems = []
    if complete and [_key(n) for n in started] != [_key(n) for n in expected]:
        problems.append('nodes differ from PIPELINE:\n  launch:   ' +
                        '\n            '.join(map(str, map(_key, started))) +
                        '\n  PIPELINE: ' + '\n            '.join(map(str, map(_key, expected))))
    for node in started:
        spec = BY_NAME.get(node.name)
        if spec is None:
            problems.append(f'node {node.name!r} is not in PIPELINE')
        elif _key(node) != _key(expected_node(spec, composed)):
            problems.append(f'{node.name}: {_key(node)} but PIPELINE says '
                            f'{_key(expected_node(spec, composed))}')
    return problems


def node_classes(node: LaunchNode) -> list[tuple[str, type]]:
    """Return (node name, class) of each node a launch Node starts (components included)."""
    if node.executable == CONTAINER:
        components = [split_component(t) for t in component_arguments(node)]
        return [(name, load_plugin(plugin)) for plugin, name in components]
    return [(node.name, executable_class(node.executable))]


def executable_class(executable: str) -> type:
    """Return the node class a console script runs (the component of the same module)."""
    points = setup_entry_points()
    module = points['console_scripts'][executable].split(':')[0]
    plugins = [p for p, target in points[COMPONENT_GROUP].items()
               if target.split(':')[0] == module]
    assert len(plugins) == 1, f'{executable}: no single component in {module}'
    return load_plugin(plugins[0])


def override_problems(launch: LaunchFile) -> list[str]:
    """Return what is wrong: a parameter set must be declared by a node it reaches, typed."""
    problems = []
    for node in launch.nodes:
        kinds = ['dict' if isinstance(p, dict) else 'file' for p in node.parameters]
        if 'dict' in kinds and 'file' in kinds[kinds.index('dict'):]:
            problems.append(f'{node.executable}: a parameter file after the overrides wins '
                            'over them; list the files first')
        try:
            targets = node_classes(node)
        except (AssertionError, KeyError, LookupError) as error:
            problems.append(f'{node.executable}: {error}')
            continue
        for name, value in node.overrides.items():
            hits = [cls.declared_specs()[name] for _, cls in targets
                    if name in cls.declared_specs()]
            if not hits:
                problems.append(f'{node.executable}: parameter {name!r} is declared by none '
                                f'of {[t for t, _ in targets]}')
                continue
            for spec in hits:
                wanted = type(spec.default)
                if isinstance(value, Typed) and isinstance(value.value, Arg):
                    if value.value_type is not wanted:
                        problems.append(f'{name}: ParameterValue(..., value_type='
                                        f'{getattr(value.value_type, "__name__", None)}) but '
                                        f'the parameter is a {wanted.__name__}')
                elif isinstance(value, Arg):
                    problems.append(f'{name}: a launch argument needs ParameterValue(..., '
                                    f'value_type={wanted.__name__}), or ros2 launch turns a '
                                    "value like '0' into another type")
                elif spec.validate(value) is not None:
                    problems.append(f'{name}: {spec.validate(value)}')
    return problems


# -- the tests -----------------------------------------------------------------------------------
def test_launch_directory_has_the_launch_files() -> None:
    assert {COMPOSED, SPLIT} <= set(LAUNCH_FILES), LAUNCH_FILES


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_valid_python_with_generate_launch_description(name: str) -> None:
    source = (LAUNCH_DIR / name).read_text(encoding='utf-8')
    compile(source, name, 'exec')
    launch = read_launch_source(source, LAUNCH_DIR / name)
    assert launch.nodes, f'{name} starts no node'


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_executables_are_console_scripts_and_installed(name: str) -> None:
    assert executable_problems(read_launch_file(name)) == []


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_plugins_are_registered_components(name: str) -> None:
    assert plugin_problems(read_launch_file(name)) == []


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_parameter_files_exist(name: str) -> None:
    assert param_file_problems(read_launch_file(name)) == []


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_launch_file_is_installed(name: str) -> None:
    installed = install_prefix() / 'share' / PACKAGE / 'launch' / name
    assert installed.is_file(), f'{installed} missing: run bash scripts/setup.sh'
    assert installed.read_bytes() == (LAUNCH_DIR / name).read_bytes(), \
        f'{installed} is stale: run bash scripts/setup.sh'


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_nodes_agree_with_pipeline(name: str) -> None:
    assert pipeline_problems(read_launch_file(name), complete=name in (COMPOSED, SPLIT)) == []


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_parameters_set_are_declared(name: str) -> None:
    assert override_problems(read_launch_file(name)) == []


def test_composed_is_one_container_with_every_stage() -> None:
    launch = read_launch_file(COMPOSED)
    assert [n.executable for n in launch.nodes] == [CONTAINER]
    assert [n.plugin for n in launch.started()] == [s.plugin for s in PIPELINE]


def test_container_reads_plugin_arguments_as_written() -> None:
    # component_container must load each plugin under the name after its last single ':'.
    for node in read_launch_file(COMPOSED).containers():
        for text in component_arguments(node):
            spec = parse_component(text, '', ())
            assert (spec.plugin, spec.name) == split_component(text), \
                f'component_container reads {text!r} as plugin {spec.plugin!r}, name ' \
                f'{spec.name!r} (edge_infer_ros.ros.container.parse_component)'


def test_split_is_one_process_per_stage() -> None:
    launch = read_launch_file(SPLIT)
    assert launch.containers() == []
    assert [n.name for n in launch.nodes] == [s.name for s in PIPELINE]


def test_composed_agrees_with_the_runner() -> None:
    runner = component_specs(RunOptions())
    launch = read_launch_file(COMPOSED).started()
    assert [(c.name, c.plugin, tuple(Path(f).name for f in c.param_files), tuple(c.remaps))
            for c in runner] == \
        [(n.name, n.plugin, n.param_files, n.remaps) for n in launch]


def test_split_agrees_with_the_runner_layout() -> None:
    # The runner's one-process-per-stage layout, plus the monitor it keeps in its own process.
    runner_groups = list(SPLIT_GROUPS['raw']) + [('budget_monitor',)]
    launch = read_launch_file(SPLIT).started()
    assert [(n.name,) for n in launch] == runner_groups
    runner = {c.name: c for c in component_specs(RunOptions(mode='split'))}
    for node in launch:
        spec = runner[node.name]
        assert (spec.plugin, tuple(Path(f).name for f in spec.param_files),
                tuple(spec.remaps)) == \
            (BY_NAME[node.name].plugin, node.param_files, node.remaps)


def test_each_executable_runs_the_plugin_class_of_its_node() -> None:
    points = setup_entry_points()
    for spec in PIPELINE:
        script_module = points['console_scripts'][spec.executable].split(':')[0]
        plugin_module = points[COMPONENT_GROUP][spec.plugin].split(':')[0]
        assert script_module == plugin_module, spec


def test_override_targets_agree_between_files_and_the_runner() -> None:
    composed, split = read_launch_file(COMPOSED), read_launch_file(SPLIT)
    composed_overrides = composed.nodes[0].overrides
    split_targets: dict[str, set[str]] = {}
    for node in split.nodes:
        for name in node.overrides:
            split_targets.setdefault(name, set()).add(node.name)
    # The container applies its overrides to every component; the ones that declare them
    # are the nodes the split file sets them on.
    composed_targets = {name: {s.name for s in PIPELINE
                               if name in load_plugin(s.plugin).declared_specs()}
                        for name in composed_overrides}
    assert composed_targets == split_targets
    # The same launch argument sets the same parameter in both files.
    for node in split.nodes:
        for name, value in node.overrides.items():
            assert value == composed_overrides[name], (node.name, name)
    # Where the runner sets the same parameters, it sets them on the same nodes.
    runner = RunOptions(model_path='/models/x.onnx', backend='tensorrt').overrides()
    for name, nodes in split_targets.items():
        runner_nodes = {node for node, values in runner.items() if name in values}
        if runner_nodes:
            assert runner_nodes == nodes, name


def test_launch_arguments() -> None:
    files = {name: read_launch_file(name) for name in LAUNCH_FILES}
    composed, split = files[COMPOSED], files[SPLIT]
    expected = {'config', 'budget', 'model', 'source', 'uri', 'namespace', 'backend',
                'same_host'}
    assert set(composed.arguments) == expected
    assert composed.arguments == split.arguments
    for name, launch in files.items():
        assert launch.used_arguments <= set(launch.arguments), name
        assert set(launch.arguments) <= launch.used_arguments, f'{name}: unused arguments'
        for argument in launch.arguments.values():
            if argument.name in composed.arguments:
                assert argument == composed.arguments[argument.name], (name, argument)
        # Every node in the same namespace, so the relative topics connect.
        assert all(n.namespace == Arg('namespace') for n in launch.nodes), name
    assert composed.config_file(Arg('config')) == 'pipeline.yaml'
    assert composed.config_file(Arg('budget')) == 'budget.yaml'


def test_override_defaults_are_the_configured_values() -> None:
    # Launching with default arguments must run the shipped configuration unchanged.
    launch = read_launch_file(SPLIT)
    for node in launch.nodes:
        specs = load_plugin(BY_NAME[node.name].plugin).declared_specs()
        configured = {}
        for entry in node.param_files:
            with open(CONFIG_DIR / launch.config_file(entry), encoding='utf-8') as stream:
                content = yaml.safe_load(stream) or {}
            for key, section in content.items():
                if section_name(key) in (node.name, '*'):
                    configured.update(section.get('ros__parameters', {}))
        for name, value in node.overrides.items():
            argument = launch.arguments[value.value.name]
            assert argument.default == configured.get(name, specs[name].default), \
                (node.name, name)
            if specs[name].choices:
                assert argument.choices == specs[name].choices, name


def ros_arguments(launch: LaunchFile, node: LaunchNode, values: dict[str, str],
                  workdir: Path) -> list[str]:
    """
    Build the command line launch_ros gives a Node's process.

    In launch_ros' order: the executable, ``arguments``, then ``--ros-args`` with the node
    name, the namespace, one ``--params-file`` per entry of ``parameters`` (a dict written to
    a file keyed by the full node name, or ``/**`` for a node without a name) and the remaps.
    ``values`` are the launch arguments given on the command line.
    """
    def text(value: Any) -> Any:
        if isinstance(value, Arg):
            if value.name in values:
                return values[value.name]
            return text(launch.arguments[value.name].default)
        if isinstance(value, Share):
            assert value.package == PACKAGE, value
            return str(share_dir())
        if isinstance(value, Join):
            return os.path.join(*(text(p) for p in value.parts))
        if isinstance(value, Typed):
            raw = text(value.value)
            return value.value_type(raw) if value.value_type else yaml.safe_load(raw)
        if isinstance(value, list):
            return [text(v) for v in value]
        return value

    namespace = None
    if node.namespace is not None:
        namespace = '/' + text(node.namespace).strip('/')
    argv = [str(node.executable)] + [str(text(a)) for a in node.arguments] + ['--ros-args']
    if node.name is not None:
        argv += ['-r', f'__node:={text(node.name)}']
    if namespace is not None:
        argv += ['-r', f'__ns:={namespace}']
    for index, entry in enumerate(node.parameters):
        if isinstance(entry, dict):
            key = '/**' if node.name is None else \
                f'{(namespace or "").rstrip("/")}/{text(node.name)}'
            path = workdir / f'launch_params_{node.executable}_{index}.yaml'
            path.write_text(yaml.safe_dump(
                {key: {'ros__parameters': {k: text(v) for k, v in entry.items()}}}))
            argv += ['--params-file', str(path)]
        else:
            argv += ['--params-file', text(entry)]
    for source, target in node.remaps:
        argv += ['-r', f'{text(source)}:={text(target)}']
    return argv


def start_like_launch(argv: list[str], context: Any) -> list[Any]:
    """Create the nodes a process would from its command line, without spinning them."""
    rclpy.init(args=argv, context=context)
    if argv[0] == CONTAINER:  # what container.main() does with its command line
        container = Container(context)
        for text in remove_ros_args(argv)[1:]:
            container.load(ComponentSpec(*split_component(text)))
        return container.nodes
    return [executable_class(argv[0])(context=context)]  # what run_single() does


#: Launch arguments differing from every default, to see that they reach the nodes.
CHANGED = {'model': '/models/other.onnx', 'source': 'v4l2', 'uri': '0', 'backend': 'tensorrt'}


@pytest.mark.parametrize('name', [COMPOSED, SPLIT])
def test_launched_nodes_get_files_and_overrides(name: str, tmp_path: Path) -> None:
    launch = read_launch_file(name)
    loaded = {}
    for node in launch.nodes:
        context = rclpy.Context()
        try:
            for instance in start_like_launch(
                    ros_arguments(launch, node, CHANGED, tmp_path), context):
                loaded[instance.get_name()] = dict(instance.p)
                instance.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)
    assert sorted(loaded) == sorted(s.name for s in PIPELINE)
    # The overrides win over the files ...
    assert loaded['camera']['source'] == 'v4l2'
    assert loaded['camera']['uri'] == '0'  # a string, not the integer 0
    assert loaded['preprocess']['model_path'] == '/models/other.onnx'
    assert loaded['detector']['model_path'] == '/models/other.onnx'
    assert loaded['detector']['backend'] == 'tensorrt'
    # ... and every other value of the files arrives at its node.
    for file_name in ('pipeline.yaml', 'budget.yaml'):
        with open(CONFIG_DIR / file_name, encoding='utf-8') as stream:
            content = yaml.safe_load(stream)
        for key, section in content.items():
            for param, value in flatten_parameters(section['ros__parameters']).items():
                if param not in ('source', 'uri', 'model_path', 'backend'):
                    assert loaded[section_name(key)][param] == pytest.approx(value), \
                        (file_name, key, param)


# -- the checks can fail ------------------------------------------------------------------------
_FILE = '                config,\n'
_OVERRIDE = "                {'model_path': ParameterValue(model, value_type=str)},\n"
MUTATIONS = [
    (SPLIT, "executable='camera_node'", "executable='camera'", executable_problems),
    (SPLIT, "name='nms'", "name='nms_node'", lambda f: pipeline_problems(f, True)),
    (SPLIT, "[share, 'config', 'pipeline.yaml']", "[share, 'config', 'pipelines.yaml']",
     param_file_problems),
    (SPLIT, "'backend': ParameterValue", "'backends': ParameterValue", override_problems),
    (SPLIT, 'parameters=[budget, ', 'parameters=[config, ', lambda f: pipeline_problems(f, True)),
    (SPLIT, _FILE + _OVERRIDE, _OVERRIDE + _FILE, override_problems),
    (COMPOSED, "'edge_infer_ros::Nms:nms'", "'edge_infer_ros::NMS:nms'", plugin_problems),
    (COMPOSED, "'edge_infer_ros::Action:action',", '', lambda f: pipeline_problems(f, True)),
    (COMPOSED, "executable='component_container',",
     "executable='component_container', name='pipeline',", plugin_problems),
    (COMPOSED, '            arguments=[\n',
     "            arguments=[\n                '--params-file', config,\n", plugin_problems),
    (COMPOSED, 'ParameterValue(uri, value_type=str)', 'uri', override_problems),
]


@pytest.mark.parametrize('name,old,new,check', MUTATIONS,
                         ids=[f'{m[0]}:{i}' for i, m in enumerate(MUTATIONS)])
def test_checks_find_broken_launch_files(name: str, old: str, new: str, check: Any) -> None:
    source = (LAUNCH_DIR / name).read_text(encoding='utf-8')
    assert source.count(old) == 1, f'mutation {old!r} no longer applies to {name}'
    broken = read_launch_source(source.replace(old, new), LAUNCH_DIR / name)
    assert check(broken), f'{check} did not notice {old!r} -> {new!r}'


def test_reader_refuses_logic() -> None:
    source = (LAUNCH_DIR / SPLIT).read_text(encoding='utf-8').replace(
        "executable='camera_node'", "executable='camera' + '_node'")
    with pytest.raises(LaunchFileError):
        read_launch_source(source, LAUNCH_DIR / SPLIT)


def test_reader_fails_without_generate_launch_description() -> None:
    with pytest.raises(LaunchFileError):
        read_launch_source('def generate():\n    return None\n', Path('x.launch.py'))

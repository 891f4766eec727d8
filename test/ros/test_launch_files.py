"""
Cheap checks of the launch files that need no running graph.

The launch files themselves run in test/pipeline/test_real_tools.py under the real ``ros2 launch``;
here, only what a run would not show: the installed copies are current, the launch arguments
of the three files agree with each other and with the parameters they set (their choices are
the nodes' own), and the plugin and executable names agree with setup.py. The launch
descriptions are loaded with the real launch package, where it is installed.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from edge_infer_ros.core.params import flatten_parameters
from edge_infer_ros.core.shape import entry_points as shape_entry_points, PIPELINE_SHAPE
from edge_infer_ros.inference.backends.factory import BACKENDS
from edge_infer_ros.ros.container import parse_component
from edge_infer_ros.ros.graph import COMPONENT_GROUP, load_plugin, PIPELINE
from edge_infer_ros.stages.camera import SOURCE_KINDS
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = ROOT / 'launch'
PACKAGE = 'edge_infer_ros'
COMPOSED, SPLIT, MONITOR = 'pipeline.launch.py', 'pipeline_split.launch.py', \
    'budget_monitor.launch.py'
LAUNCH_FILES = sorted(p.name for p in LAUNCH_DIR.glob('*.launch.py'))


def install_prefix() -> Path:
    """Return where colcon installed the package (scripts/setup.sh builds it)."""
    try:
        from ament_index_python.packages import get_package_prefix
        return Path(get_package_prefix(PACKAGE))
    except Exception:  # noqa: B902 - not on the ament index: the checkout's install/
        return ROOT / 'install' / PACKAGE


def launch_arguments(name: str) -> dict[str, Any]:
    """Return the DeclareLaunchArgument actions of a launch file, by name (real launch package)."""
    launch = pytest.importorskip('launch', reason='launch is not installed (scripts/setup.sh '
                                 'builds it from ../shared/ros2_tools)')
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    description = get_launch_description_from_python_launch_file(str(LAUNCH_DIR / name))
    assert isinstance(description, launch.LaunchDescription)
    return {a.name: a for a in description.get_launch_arguments()}


def default_text(argument: Any) -> str:
    """Return a launch argument's default when it is plain text ('' for a substitution)."""
    parts = argument.default_value or []
    return ''.join(getattr(p, 'text', '\0') for p in parts) if parts else ''


def test_launch_directory_has_the_launch_files() -> None:
    assert {COMPOSED, SPLIT, MONITOR} <= set(LAUNCH_FILES), LAUNCH_FILES


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_launch_file_is_installed(name: str) -> None:
    installed = install_prefix() / 'share' / PACKAGE / 'launch' / name
    assert installed.is_file(), f'{installed} missing: run bash scripts/setup.sh'
    assert installed.read_bytes() == (LAUNCH_DIR / name).read_bytes(), \
        f'{installed} is stale: run bash scripts/setup.sh'


def test_composed_and_split_take_the_same_arguments() -> None:
    composed, split = launch_arguments(COMPOSED), launch_arguments(SPLIT)
    from edge_infer_ros.ros.launch_args import SHAPE_ARGUMENTS, TUNABLES
    assert set(composed) == set(split) == {
        'config', 'budget', 'model', 'source', 'uri', 'image_topic', 'image_qos', 'namespace',
        'backend', 'monitor', 'fastdds_profile', 'same_host', 'image_transport',
        *(t.name for t in TUNABLES), *SHAPE_ARGUMENTS}
    for name, argument in composed.items():
        assert argument.choices == split[name].choices, name
        assert default_text(argument) == default_text(split[name]), name
    monitor = launch_arguments(MONITOR)
    assert set(monitor) == {'budget', 'namespace', 'fastdds_profile', 'deadline_ms',
                            'use_sim_time', 'params_file'}


def test_every_tuning_argument_names_a_parameter_its_nodes_declare() -> None:
    from edge_infer_ros.ros.launch_args import TUNABLES
    classes = {spec.name: load_plugin(spec.plugin) for spec in PIPELINE}
    for tunable in TUNABLES:
        for node, parameter in tunable.targets:
            if parameter == 'use_sim_time':
                continue  # every rclpy node has it
            specs = classes[node].declared_specs()
            assert parameter in specs, (tunable.name, node, parameter)
            kind = type(specs[parameter].default)
            assert tunable.kind is (list if kind is tuple else kind), (tunable.name, parameter)


def test_tuning_arguments_are_parsed_as_their_parameters_type() -> None:
    from edge_infer_ros.ros.launch_args import image_topics, node_overrides
    overrides = node_overrides({'fps': '15', 'class_names': '[ball, 7]', 'debug_image': 'true',
                                'frame_id': '0123', 'iou_threshold': ''})
    # A string stays the text given (a frame_id of digits is not a number).
    assert overrides['camera'] == {'fps': 15.0, 'frame_id': '0123'}
    assert overrides['detector'] == {'expected_fps': 15.0, 'class_names': ['ball', '7']}
    assert overrides['action'] == {'debug_image': True}
    assert 'nms' not in overrides  # empty: the parameter files decide
    assert image_topics({'image_topics': '[/a, /b]'}) == ['/a', '/b']
    for name, text in (('fps', 'fast'), ('debug_image', 'maybe'), ('class_names', 'ball'),
                       ('fps', '[1'), ('fps', 'true')):
        with pytest.raises(ValueError, match=f'launch argument {name}'):
            node_overrides({name: text})


def test_argument_choices_are_the_nodes_own() -> None:
    arguments = launch_arguments(COMPOSED)
    camera = load_plugin('edge_infer_ros::Camera').declared_specs()
    assert tuple(arguments['source'].choices) == SOURCE_KINDS
    assert tuple(arguments['backend'].choices) == BACKENDS
    assert tuple(arguments['image_qos'].choices) == camera['qos.input.reliability'].choices
    assert default_text(arguments['image_qos']) == camera['qos.input.reliability'].default
    preprocess = load_plugin('edge_infer_ros::Preprocess').declared_specs()
    assert tuple(arguments['image_transport'].choices) == \
        preprocess['input_transport'].choices


def test_argument_defaults_are_the_configured_values() -> None:
    # Launching with default arguments must run the shipped configuration unchanged.
    config = flatten_parameters(yaml.safe_load((ROOT / 'config' / 'pipeline.yaml').read_text()))
    arguments = launch_arguments(COMPOSED)
    for argument, (section, parameter) in {'source': ('/**/camera', 'source'),
                                           'uri': ('/**/camera', 'uri'),
                                           'model': ('/**/detector', 'model_path'),
                                           'backend': ('/**/detector', 'backend'),
                                           'image_transport': ('/**/preprocess',
                                                               'input_transport')}.items():
        key = f'{section}.ros__parameters.{parameter}'
        assert default_text(arguments[argument]) == str(config.get(key, '')), argument


def test_each_executable_runs_the_plugin_class_of_its_node() -> None:
    scripts = {e.name: e.value for e in entry_points(group='console_scripts')}
    plugins = {e.name: e.value for e in entry_points(group=COMPONENT_GROUP)}
    for spec in PIPELINE:
        assert scripts[spec.executable].split(':')[0] == plugins[spec.plugin].split(':')[0], spec
    # The launch files take plugins and executables from PIPELINE, the nodes from the plan.
    for name in (COMPOSED, SPLIT):
        assert 'from edge_infer_ros.ros.graph import PIPELINE' in \
            (LAUNCH_DIR / name).read_text(encoding='utf-8'), name
    assert "executable='budget_monitor'" in (LAUNCH_DIR / MONITOR).read_text(encoding='utf-8')


def test_the_installed_entry_points_are_the_shapes() -> None:
    # setup.py derives them from core/shape.py: the installed package holds exactly those,
    # each loads a node class whose stage is named as the shape names it.
    for group, wanted in shape_entry_points().items():
        installed = {f'{e.name} = {e.value}' for e in entry_points(group=group)
                     if e.value.startswith('edge_infer_ros.ros.nodes.')}
        assert installed == set(wanted), group
    for node in PIPELINE_SHAPE:
        assert load_plugin(node.plugin).DEFAULT_NAME == node.name, node


def test_the_launch_plan_names_the_pipelines_nodes() -> None:
    from edge_infer_ros.ros.launch_args import pipeline_plan
    given = {'budget': 'b.yaml', 'source': 'synthetic', 'uri': '', 'image_qos': 'best_effort',
             'image_topic': 'image_in', 'model': '', 'image_transport': 'raw',
             'backend': 'onnxruntime', 'action': 'true', 'monitor': 'true',
             'cmd_vel_topic': 'cmd_vel', 'deadline_ms': '60'}
    assert [p.name for p in pipeline_plan(given)] == [spec.name for spec in PIPELINE]
    plans = {p.name: p for p in pipeline_plan({**given, 'action': 'false',
                                               'image_topics': '[/a, /b]'})}
    assert 'action' not in plans and 'camera' not in plans
    assert plans['preprocess'].parameters['image_topics'] == ['/a', '/b']
    assert plans['budget_monitor'].parameters == {'deadline_ms': 60.0}
    assert plans['detector'].parameters['budget_file'] == 'b.yaml'


def test_container_reads_plugin_arguments_as_written() -> None:
    # component_container loads each plugin under the name after its last single ':'.
    spec = parse_component('edge_infer_ros::BudgetMonitor:monitor', '', ())
    assert (spec.plugin, spec.name) == ('edge_infer_ros::BudgetMonitor', 'monitor')
    assert parse_component('edge_infer_ros::Nms', '', ()).name == 'nms'

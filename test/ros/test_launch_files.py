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
    assert set(composed) == set(split) == {
        'config', 'budget', 'model', 'source', 'uri', 'image_topic', 'image_qos', 'namespace',
        'backend', 'monitor', 'fastdds_profile', 'same_host', 'use_sim_time'}
    for name, argument in composed.items():
        assert argument.choices == split[name].choices, name
        assert default_text(argument) == default_text(split[name]), name
    monitor = launch_arguments(MONITOR)
    assert set(monitor) == {'budget', 'namespace', 'fastdds_profile', 'use_sim_time'}


def test_argument_choices_are_the_nodes_own() -> None:
    arguments = launch_arguments(COMPOSED)
    camera = load_plugin('edge_infer_ros::Camera').declared_specs()
    assert tuple(arguments['source'].choices) == SOURCE_KINDS
    assert tuple(arguments['backend'].choices) == BACKENDS
    assert tuple(arguments['image_qos'].choices) == camera['qos.input.reliability'].choices
    assert default_text(arguments['image_qos']) == camera['qos.input.reliability'].default


def test_argument_defaults_are_the_configured_values() -> None:
    # Launching with default arguments must run the shipped configuration unchanged.
    config = flatten_parameters(yaml.safe_load((ROOT / 'config' / 'pipeline.yaml').read_text()))
    arguments = launch_arguments(COMPOSED)
    for argument, (section, parameter) in {'source': ('/**/camera', 'source'),
                                           'uri': ('/**/camera', 'uri'),
                                           'model': ('/**/detector', 'model_path'),
                                           'backend': ('/**/detector', 'backend')}.items():
        key = f'{section}.ros__parameters.{parameter}'
        assert default_text(arguments[argument]) == str(config.get(key, '')), argument


def test_each_executable_runs_the_plugin_class_of_its_node() -> None:
    scripts = {e.name: e.value for e in entry_points(group='console_scripts')}
    plugins = {e.name: e.value for e in entry_points(group=COMPONENT_GROUP)}
    for spec in PIPELINE:
        assert scripts[spec.executable].split(':')[0] == plugins[spec.plugin].split(':')[0], spec
        text = (LAUNCH_DIR / SPLIT).read_text(encoding='utf-8') + \
            (LAUNCH_DIR / MONITOR).read_text(encoding='utf-8')
        assert f"'{spec.executable}'" in text, spec.executable
        plugin = spec.plugin.split('::')[1]
        assert f"'{plugin}'" in (LAUNCH_DIR / COMPOSED).read_text(encoding='utf-8'), plugin


def test_container_reads_plugin_arguments_as_written() -> None:
    # component_container loads each plugin under the name after its last single ':'.
    spec = parse_component('edge_infer_ros::BudgetMonitor:monitor', '', ())
    assert (spec.plugin, spec.name) == ('edge_infer_ros::BudgetMonitor', 'monitor')
    assert parse_component('edge_infer_ros::Nms', '', ()).name == 'nms'

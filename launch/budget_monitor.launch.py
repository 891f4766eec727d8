"""
Launch the budget monitor alone, e.g. on another host than the pipeline.

The monitor follows the ``trace`` topic of the last stage over DDS and publishes
``deadline_miss`` and ``/diagnostics``; give it the namespace of the pipeline it watches, and
start that pipeline with ``monitor:=false`` so that only one monitor of that name exists.
pipeline_split.launch.py includes this file for its monitor.

    ros2 launch edge_infer_ros budget_monitor.launch.py namespace:=robot1 deadline_ms:=60
"""

from edge_infer_ros.ros import launch_args
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_context import LaunchContext
from launch.substitutions import (EnvironmentVariable, LaunchConfiguration,
                                  NotEqualsSubstitution, PathJoinSubstitution)
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _monitor(context: LaunchContext) -> list:
    """Start the monitor: its budget file, params_file after it, deadline_ms, use_sim_time."""
    given = context.launch_configurations
    files: list = [given['budget']] + ([given['params_file']] if given['params_file'] else [])
    overrides = launch_args.node_overrides(
        {name: given[name] for name in ('deadline_ms', 'use_sim_time')})
    return [Node(package='edge_infer_ros', executable='budget_monitor', name='budget_monitor',
                 namespace=given['namespace'], output='screen',
                 parameters=files + [overrides.get('budget_monitor', {})])]


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: the arguments and the budget monitor process."""
    share = FindPackageShare('edge_infer_ros')
    profile = LaunchConfiguration('fastdds_profile')

    return LaunchDescription([
        DeclareLaunchArgument(
            'budget', default_value=PathJoinSubstitution([share, 'config', 'budget.yaml']),
            description='parameter file of the budget monitor (latency budgets)'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='namespace of the pipeline to watch'),
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=EnvironmentVariable(
                'FASTDDS_DEFAULT_PROFILES_FILE',
                default_value=PathJoinSubstitution([share, 'config', 'fastdds_shm.xml'])),
            description="Fast DDS profile of the process ('': Fast DDS defaults)"),
        DeclareLaunchArgument('deadline_ms', default_value='',
                              description="end-to-end deadline, ms ('': the budget file's)"),
        DeclareLaunchArgument('use_sim_time', default_value='',
                              description="true: follow /clock ('': the parameter files')"),
        DeclareLaunchArgument('params_file', default_value='',
                              description='a parameter file applied after the budget file'),

        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', profile,
                               condition=IfCondition(NotEqualsSubstitution(profile, ''))),
        OpaqueFunction(function=_monitor),
    ])

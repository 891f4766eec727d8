"""
Launch the budget monitor alone, e.g. on another host than the pipeline.

The monitor follows the ``trace`` topic of the last stage over DDS and publishes
``deadline_miss`` and ``/diagnostics``; give it the namespace of the pipeline it watches, and
start that pipeline with ``monitor:=false`` so that only one monitor of that name exists.
pipeline_split.launch.py includes this file for its monitor.

    ros2 launch edge_infer_ros budget_monitor.launch.py namespace:=robot1
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import (EnvironmentVariable, LaunchConfiguration,
                                  NotEqualsSubstitution, PathJoinSubstitution)
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


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
            'use_sim_time', default_value='false', choices=['true', 'false'],
            description='the monitor on /clock (a simulator, a bag played with --clock): '
                        'stamps, ages, deadlines and STALE in that time'),
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=EnvironmentVariable(
                'FASTDDS_DEFAULT_PROFILES_FILE',
                default_value=PathJoinSubstitution([share, 'config', 'fastdds_shm.xml'])),
            description="Fast DDS profile of the process ('': Fast DDS defaults)"),

        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', profile,
                               condition=IfCondition(NotEqualsSubstitution(profile, ''))),
        Node(
            package='edge_infer_ros',
            executable='budget_monitor',
            name='budget_monitor',
            namespace=LaunchConfiguration('namespace'),
            output='screen',
            parameters=[LaunchConfiguration('budget'),
                        {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                                        value_type=bool)}],
        ),
    ])

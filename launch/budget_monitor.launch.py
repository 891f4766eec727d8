"""
Launch the budget monitor alone, e.g. on another host than the pipeline.

The monitor follows the ``trace`` topic of the last stage over DDS and publishes
``deadline_miss`` and ``/diagnostics``; give it the namespace of the pipeline it watches.

    ros2 launch edge_infer_ros budget_monitor.launch.py namespace:=robot1
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: the arguments and the budget monitor process."""
    share = FindPackageShare('edge_infer_ros')
    budget = LaunchConfiguration('budget')
    namespace = LaunchConfiguration('namespace')

    return LaunchDescription([
        DeclareLaunchArgument(
            'budget', default_value=PathJoinSubstitution([share, 'config', 'budget.yaml']),
            description='parameter file of the budget monitor (latency budgets)'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='namespace of the pipeline to watch'),

        Node(
            package='edge_infer_ros',
            executable='budget_monitor',
            name='budget_monitor',
            namespace=namespace,
            output='screen',
            parameters=[budget],
        ),
    ])

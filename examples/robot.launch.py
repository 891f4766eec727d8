"""
A robot's launch file around edge_infer_ros: two cameras, one namespace, one that drives.

Copy it into your robot's bringup package and replace the two driver placeholders with your
camera drivers (usb_cam, v4l2_camera, realsense2_camera, ...). It includes the package's own
launch file; every argument of that file (``ros2 launch edge_infer_ros pipeline.launch.py
--show-args``) can be set the same way.

    ros2 launch edge_infer_ros robot.launch.py        # installed in share/edge_infer_ros/examples
    ros2 launch ./robot.launch.py namespace:=robot2 command_type:=twist

What it starts, in namespace robot1:
- two placeholder drivers publishing ``front/image_raw`` and ``rear/image_raw`` (frame_id
  ``front_optical_frame`` / ``rear_optical_frame``): the package's camera node on its
  synthetic scene, standing in for a real driver in a process of its own;
- the pipeline, composed, reading both topics directly (``image_topics``), driven by the front
  camera only (``drive_camera``), the budgets of ``budget`` (a ``cameras:`` section gives each
  camera its own deadline), commands on ``cmd_vel``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _driver(name: str, namespace: LaunchConfiguration, seed: int) -> Node:
    """Stand-in for a camera driver: replace with yours (same topic, same frame_id)."""
    return Node(package='edge_infer_ros', executable='camera_node', name=f'{name}_driver',
                namespace=namespace, output='screen',
                parameters=[{'source': 'synthetic', 'seed': seed, 'fps': 15.0,
                             'frame_id': f'{name}_optical_frame'}],
                remappings=[('image_raw', f'{name}/image_raw')])


def generate_launch_description() -> LaunchDescription:
    """Return the robot's launch: its drivers and the pipeline, in one namespace."""
    namespace = LaunchConfiguration('namespace')
    pipeline = PathJoinSubstitution([FindPackageShare('edge_infer_ros'), 'launch',
                                     'pipeline.launch.py'])
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='robot1',
                              description="the robot's namespace"),
        DeclareLaunchArgument('command_type', default_value='twist_stamped',
                              description="what the robot's base takes: twist_stamped or twist"),
        DeclareLaunchArgument(
            'budget', default_value=PathJoinSubstitution(
                [FindPackageShare('edge_infer_ros'), 'config', 'budget.yaml']),
            description='latency budgets (a cameras: section gives each camera its deadline)'),
        _driver('front', namespace, seed=1),
        _driver('rear', namespace, seed=2),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(pipeline),
            launch_arguments={
                'namespace': namespace,
                'image_topics': '[front/image_raw, rear/image_raw]',
                'drive_camera': 'front_optical_frame',
                'command_type': LaunchConfiguration('command_type'),
                'budget': LaunchConfiguration('budget'),
                'fps': '15.0',
            }.items()),
    ])

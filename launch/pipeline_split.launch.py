"""
Launch the pipeline split: one process per stage, DDS between them.

For spreading the stages over processes or hosts, or for debugging one stage on its own.
Frames cross every hop as ROS messages (sensor_msgs/Image, TensorFrame, ...), so this costs
serialisation that the composed launch (pipeline.launch.py) avoids. The nodes, their names,
parameter files and remaps match edge_infer_ros.ros.graph.PIPELINE and the runner's split
layout; the budget monitor is budget_monitor.launch.py, included (``monitor:=false`` leaves
it to another host).

    ros2 launch edge_infer_ros pipeline_split.launch.py
    ros2 launch edge_infer_ros pipeline_split.launch.py source:=v4l2 uri:=/dev/video0
    ros2 launch edge_infer_ros pipeline_split.launch.py source:=topic image_topic:=/cam/image
    ros2 launch edge_infer_ros pipeline_split.launch.py same_host:=iceoryx2  # shared memory

The arguments ``model``, ``source``, ``uri`` and ``backend`` override the same parameters of
the files (they come after them); their defaults are the values of the shipped
config/pipeline.yaml. With a ``namespace``, a node reads only the sections of the parameter
files whose keys match its full name: ``/**/camera`` or ``/robot1/camera`` do, a plain
``camera`` matches ``/camera``. Every process gets ``FASTDDS_DEFAULT_PROFILES_FILE``
(argument ``fastdds_profile``, by default the shipped config/fastdds_shm.xml unless the
variable was set): without its large shared-memory segment, frames between processes go over
fragmented UDP and best-effort readers lose most of them.
"""

from typing import Optional

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import (EnvironmentVariable, LaunchConfiguration,
                                  NotEqualsSubstitution, PathJoinSubstitution)
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'edge_infer_ros'


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: the arguments and one process per stage."""
    share = FindPackageShare(PACKAGE)
    config = LaunchConfiguration('config')
    namespace = LaunchConfiguration('namespace')
    model = ParameterValue(LaunchConfiguration('model'), value_type=str)
    profile = LaunchConfiguration('fastdds_profile')

    same_host = {'transport.same_host': ParameterValue(LaunchConfiguration('same_host'),
                                                       value_type=str)}

    def stage(executable: str, name: str, overrides: Optional[dict] = None, **kwargs) -> Node:
        return Node(package=PACKAGE, executable=executable, name=name, namespace=namespace,
                    output='screen',
                    parameters=[config, same_host] + ([overrides] if overrides else []),
                    **kwargs)

    return LaunchDescription([
        DeclareLaunchArgument(
            'config', default_value=PathJoinSubstitution([share, 'config', 'pipeline.yaml']),
            description='parameter file of the stage nodes'),
        DeclareLaunchArgument(
            'budget', default_value=PathJoinSubstitution([share, 'config', 'budget.yaml']),
            description='parameter file of the budget monitor (latency budgets)'),
        DeclareLaunchArgument(
            'model', default_value='',
            description="ONNX model of preprocess and detector ('': the shipped model, "
                        "'int8': the shipped INT8 one)"),
        DeclareLaunchArgument(
            'source', default_value='synthetic',
            choices=['synthetic', 'video', 'v4l2', 'folder', 'topic'],
            description='where the camera node gets frames (topic: from image_topic)'),
        DeclareLaunchArgument(
            'uri', default_value='',
            description='video file, V4L2 device or image folder of the camera source'),
        DeclareLaunchArgument(
            'image_topic', default_value='image_in',
            description="the robot's camera topic the camera node reads with source:=topic"),
        DeclareLaunchArgument(
            'image_qos', default_value='best_effort', choices=['best_effort', 'reliable'],
            description='reliability of the image input (best_effort accepts both kinds of '
                        'camera driver)'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='namespace of every node and topic'),
        DeclareLaunchArgument(
            'backend', default_value='onnxruntime', choices=['onnxruntime', 'tensorrt'],
            description='inference backend of the detector (tensorrt falls back to onnxruntime)'),
        DeclareLaunchArgument(
            'monitor', default_value='true', choices=['true', 'false'],
            description='start the budget monitor (budget_monitor.launch.py)'),
        DeclareLaunchArgument(
            'same_host', default_value='dds', choices=['dds', 'iceoryx2'],
            description="transport.same_host: frames to the package's processes on this host "
                        'by DDS or iceoryx2 shared memory (zero-copy; DDS where it is missing)'),
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=EnvironmentVariable(
                'FASTDDS_DEFAULT_PROFILES_FILE',
                default_value=PathJoinSubstitution([share, 'config', 'fastdds_shm.xml'])),
            description="Fast DDS profile of the processes ('': Fast DDS defaults)"),

        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', profile,
                               condition=IfCondition(NotEqualsSubstitution(profile, ''))),
        stage('camera_node', 'camera', {
            'source': LaunchConfiguration('source'),
            'uri': ParameterValue(LaunchConfiguration('uri'), value_type=str),
            'qos.input.reliability': LaunchConfiguration('image_qos'),
        }, remappings=[('image_in', LaunchConfiguration('image_topic'))]),
        stage('preprocess_node', 'preprocess', {'model_path': model}),
        stage('detector_node', 'detector',
              {'model_path': model, 'backend': LaunchConfiguration('backend')}),
        stage('nms_node', 'nms'),
        stage('action_node', 'action'),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([share, 'launch', 'budget_monitor.launch.py'])),
            launch_arguments={'budget': LaunchConfiguration('budget'), 'namespace': namespace,
                              'fastdds_profile': profile}.items(),
            condition=IfCondition(LaunchConfiguration('monitor'))),
    ])

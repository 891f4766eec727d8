"""
Launch the pipeline composed: every stage in one component container process.

Frames go from stage to stage by reference (zero-copy), not through DDS. The standard
launch_ros way: a ``ComposableNodeContainer`` (the package's ``component_container``, a
component manager like rclcpp's) loads one ``ComposableNode`` per stage; ``ros2 component
list`` shows them, ``ros2 component load`` adds more.

    ros2 launch edge_infer_ros pipeline.launch.py
    ros2 launch edge_infer_ros pipeline.launch.py source:=video uri:=/data/run1.mp4
    ros2 launch edge_infer_ros pipeline.launch.py source:=topic image_topic:=/front/image_raw
    ros2 launch edge_infer_ros pipeline.launch.py namespace:=robot1 monitor:=false

The parameter files are given to the container and forwarded to each component
(``forward_global_arguments``) instead of being listed in ``ComposableNode(parameters=...)``:
launch_ros reads such files itself and matches only ``/**`` and the exact node name, so the
shipped files' ``/**/camera`` sections (which follow a namespace) would be lost. The
arguments ``model``, ``source``, ``uri`` and ``backend`` are parameters of the load requests
and win over the files; their defaults are the values of the shipped config/pipeline.yaml.

Every process this file starts gets ``FASTDDS_DEFAULT_PROFILES_FILE`` (argument
``fastdds_profile``): the shipped config/fastdds_shm.xml, whose large shared-memory segment
keeps frames from being lost between processes, unless the variable was already set.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import (EnvironmentVariable, LaunchConfiguration,
                                  NotEqualsSubstitution, PathJoinSubstitution)
from launch_ros.actions import ComposableNodeContainer
from launch_ros.descriptions import ComposableNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'edge_infer_ros'


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: the arguments and the one container process."""
    share = FindPackageShare(PACKAGE)
    namespace = LaunchConfiguration('namespace')
    model = ParameterValue(LaunchConfiguration('model'), value_type=str)
    profile = LaunchConfiguration('fastdds_profile')
    forward = [{'forward_global_arguments': True}]
    same_host = {'transport.same_host': ParameterValue(LaunchConfiguration('same_host'),
                                                       value_type=str)}

    def stage(plugin: str, name: str, parameters: tuple = (), **kwargs) -> ComposableNode:
        return ComposableNode(package=PACKAGE, plugin=f'{PACKAGE}::{plugin}', name=name,
                              namespace=namespace, extra_arguments=forward,
                              parameters=[*parameters, same_host], **kwargs)

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
            description='start the budget monitor in the container (false: run '
                        'budget_monitor.launch.py elsewhere)'),
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
        ComposableNodeContainer(
            package=PACKAGE,
            executable='component_container',
            name='pipeline_container',
            namespace=namespace,
            output='screen',
            parameters=[LaunchConfiguration('config'), LaunchConfiguration('budget')],
            composable_node_descriptions=[
                stage('Camera', 'camera',
                      parameters=({
                          'source': LaunchConfiguration('source'),
                          'uri': ParameterValue(LaunchConfiguration('uri'), value_type=str),
                          'qos.input.reliability': LaunchConfiguration('image_qos'),
                      },),
                      remappings=[('image_in', LaunchConfiguration('image_topic'))]),
                stage('Preprocess', 'preprocess', parameters=({'model_path': model},)),
                stage('Detector', 'detector',
                      parameters=({'model_path': model,
                                   'backend': LaunchConfiguration('backend')},)),
                stage('Nms', 'nms'),
                stage('Action', 'action'),
                stage('BudgetMonitor', 'budget_monitor',
                      condition=IfCondition(LaunchConfiguration('monitor'))),
            ],
        ),
    ])

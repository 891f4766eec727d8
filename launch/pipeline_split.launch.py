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
    ros2 launch edge_infer_ros pipeline_split.launch.py same_host:=dds  # no shared memory
    ros2 launch edge_infer_ros pipeline_split.launch.py fps:=15 deadline_ms:=60 action:=false

The tuning arguments (fps, thresholds, deadline_ms, command_type, ...; see
edge_infer_ros.ros.launch_args) are the composed file's: empty, they set nothing.

The arguments ``model``, ``source``, ``uri`` and ``backend`` override the same parameters of
the files (they come after them); their defaults are the values of the shipped
config/pipeline.yaml. With a ``namespace``, a node reads only the sections of the parameter
files whose keys match its full name: ``/**/camera`` or ``/robot1/camera`` do, a plain
``camera`` matches ``/camera``. Every process gets ``FASTDDS_DEFAULT_PROFILES_FILE``
(argument ``fastdds_profile``, by default the shipped config/fastdds_shm.xml unless the
variable was set): without its large shared-memory segment, frames between processes go over
fragmented UDP and best-effort readers lose most of them.
"""

from edge_infer_ros.ros import launch_args
from edge_infer_ros.ros.graph import PIPELINE
from edge_infer_ros.ros.same_host import AUTO, same_host_choices
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction,
                            SetEnvironmentVariable)
from launch.conditions import IfCondition
from launch.launch_context import LaunchContext
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import (EnvironmentVariable, LaunchConfiguration,
                                  NotEqualsSubstitution, PathJoinSubstitution)
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'edge_infer_ros'


def _stages(context: LaunchContext) -> list:
    """Build one process per stage, and the monitor's include, from the arguments given."""
    given = context.launch_configurations
    specs = {spec.name: spec for spec in PIPELINE}
    # params_file after the shipped files: it wins over them, not over the arguments.
    files: list = [given['config'], {'transport.same_host': given['same_host']}]
    if given['params_file']:
        files.append(given['params_file'])
    actions: list = []
    for plan in launch_args.pipeline_plan(given):
        if plan.name == 'budget_monitor':  # its own launch file, for other hosts too
            monitor = {name: given[name] for name in ('budget', 'namespace', 'fastdds_profile',
                                                      'deadline_ms', 'use_sim_time',
                                                      'params_file')}
            actions.append(IncludeLaunchDescription(
                PythonLaunchDescriptionSource(
                    PathJoinSubstitution([FindPackageShare(PACKAGE), 'launch',
                                          'budget_monitor.launch.py'])),
                launch_arguments=monitor.items()))
            continue
        actions.append(Node(package=PACKAGE, executable=specs[plan.name].executable,
                            name=plan.name, namespace=given['namespace'], output='screen',
                            parameters=files + [plan.parameters],
                            remappings=list(plan.remappings)))
    return actions


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: the arguments and one process per stage."""
    share = FindPackageShare(PACKAGE)
    profile = LaunchConfiguration('fastdds_profile')
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
            choices=['synthetic', 'video', 'v4l2', 'folder', 'topic', 'bag'],
            description='where the camera node gets frames (topic: from image_topic)'),
        DeclareLaunchArgument(
            'uri', default_value='',
            description='video file, V4L2 device, image folder or bag of the camera source'),
        DeclareLaunchArgument(
            'image_topic', default_value='image_in',
            description="the robot's camera topic the camera node reads with source:=topic"),
        DeclareLaunchArgument(
            'image_transport', default_value='raw', choices=['raw', 'compressed'],
            description='compressed: preprocess reads <image_topic>/compressed (JPEG/PNG '
                        'sensor_msgs/CompressedImage from a driver) instead of the camera '
                        'node; use it with source:=topic'),
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
            'same_host', default_value=AUTO, choices=list(same_host_choices()),
            description="transport.same_host: frames to the package's processes on this host "
                        'by iceoryx2 shared memory where it imports (auto), or by dds or '
                        'iceoryx2 alone'),
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=EnvironmentVariable(
                'FASTDDS_DEFAULT_PROFILES_FILE',
                default_value=PathJoinSubstitution([share, 'config', 'fastdds_shm.xml'])),
            description="Fast DDS profile of the processes ('': Fast DDS defaults)"),

        *launch_args.declare(),

        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', profile,
                               condition=IfCondition(NotEqualsSubstitution(profile, ''))),
        OpaqueFunction(function=_stages),
    ])

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
    ros2 launch edge_infer_ros pipeline.launch.py source:=topic use_sim_time:=true
    ros2 launch edge_infer_ros pipeline.launch.py \
        image_topics:="[/front/image_raw, /rear/image_raw]" drive_camera:=front_optical_frame \
        fps:=15 deadline_ms:=60 command_type:=twist cmd_vel_topic:=/base/cmd_vel

The arguments a user tunes at start (fps, frame_id, class_names, thresholds, deadline_ms,
command_type, drive_camera, debug_image, use_sim_time, ...) are edge_infer_ros.ros.launch_args':
left empty, they set nothing and the parameter files decide; ``params_file`` is applied after
the shipped files. ``image_topics`` makes preprocess read the robot's image topics directly (no
camera node); ``action:=false`` leaves the action stage out.

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

import signal

from edge_infer_ros.ros import launch_args
from edge_infer_ros.ros.graph import PIPELINE
from edge_infer_ros.ros.same_host import AUTO, same_host_choices
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler,
                            SetEnvironmentVariable)
from launch.conditions import IfCondition
from launch.event_handlers import OnShutdown
from launch.launch_context import LaunchContext
from launch.substitutions import (EnvironmentVariable, LaunchConfiguration,
                                  NotEqualsSubstitution, PathJoinSubstitution)
from launch_ros.actions import ComposableNodeContainer
from launch_ros.descriptions import ComposableNode
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'edge_infer_ros'


def _container(context: LaunchContext) -> list:
    """Build the container and its components from the arguments given."""
    given = context.launch_configurations
    specs = {spec.name: spec for spec in PIPELINE}
    forward = [{'forward_global_arguments': True}]
    same_host = {'transport.same_host': given['same_host']}
    nodes = [ComposableNode(package=PACKAGE, plugin=specs[plan.name].plugin, name=plan.name,
                            namespace=given['namespace'], extra_arguments=forward,
                            parameters=[same_host, plan.parameters],
                            remappings=list(plan.remappings))
             for plan in launch_args.pipeline_plan(given)]
    # The files go to every component; params_file last, so it wins over the shipped ones.
    files: list = [given['config'], given['budget']]
    if given['params_file']:
        files.append(given['params_file'])
    sim_time = launch_args.node_overrides(given).get('camera', {}).get('use_sim_time')
    if sim_time is not None:
        files.append({'use_sim_time': sim_time})  # the container itself
    return [ComposableNodeContainer(
        package=PACKAGE, executable='component_container', name='pipeline_container',
        namespace=given['namespace'], output='screen', parameters=files,
        composable_node_descriptions=nodes)]


def _ignore_late_sigint(event: object, context: LaunchContext) -> None:
    """
    Ignore SIGINT once launch shuts down: a second Ctrl-C must not kill launch itself.

    Launch ignores a second SIGINT while its loop runs, but the composed launch's process also
    holds launch_ros's rclpy context (it loads the components), whose teardown outlasts the
    loop: a Ctrl-C then raised KeyboardInterrupt there and ``ros2 launch`` ended by SIGINT
    (-2, 130 in a shell) although the container had exited cleanly. Launch stops its children
    itself (SIGINT, then SIGTERM, SIGKILL on timers), so nothing needs the second one.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: the arguments and the one container process."""
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
            description='start the budget monitor in the container (false: run '
                        'budget_monitor.launch.py elsewhere)'),
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
        OpaqueFunction(function=_container),
        RegisterEventHandler(OnShutdown(on_shutdown=_ignore_late_sigint)),
    ])

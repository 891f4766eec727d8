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

from edge_infer_ros.ros import launch_args
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
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
    overrides = launch_args.node_overrides(given)
    image_topics = launch_args.image_topics(given)
    namespace = given['namespace']
    budget = given['budget']
    forward = [{'forward_global_arguments': True}]
    same_host = {'transport.same_host': given['same_host']}

    def stage(plugin: str, name: str, parameters: dict, **kwargs) -> ComposableNode:
        return ComposableNode(package=PACKAGE, plugin=f'{PACKAGE}::{plugin}', name=name,
                              namespace=namespace, extra_arguments=forward,
                              parameters=[parameters, same_host, overrides.get(name, {})],
                              **kwargs)

    nodes = []
    if not image_topics:
        nodes.append(stage('Camera', 'camera', {
            'source': given['source'], 'uri': given['uri'],
            'qos.input.reliability': given['image_qos']},
            remappings=[('image_in', given['image_topic'])]))
    preprocess = {'model_path': given['model'], 'input_transport': given['image_transport']}
    if image_topics:
        preprocess.update({'image_topics': image_topics,
                           'qos.input.reliability': given['image_qos']})
    # image_transport:=compressed: the driver's JPEG/PNG frames straight to preprocess
    nodes.append(stage('Preprocess', 'preprocess', preprocess, remappings=[
        ('image_raw/compressed', given['image_topic'] + '/compressed')]))
    nodes.append(stage('Detector', 'detector', {
        'model_path': given['model'], 'backend': given['backend'], 'budget_file': budget}))
    nodes.append(stage('Nms', 'nms', {}))
    if given['action'] == 'true':
        nodes.append(stage('Action', 'action', {'budget_file': budget},
                           remappings=[('cmd_vel', given['cmd_vel_topic'])]))
    if given['monitor'] == 'true':
        nodes.append(stage('BudgetMonitor', 'budget_monitor', {}))
    # The files go to every component; params_file last, so it wins over the shipped ones.
    files: list = [given['config'], budget]
    if given['params_file']:
        files.append(given['params_file'])
    if 'use_sim_time' in overrides.get('camera', {}):
        files.append({'use_sim_time': overrides['camera']['use_sim_time']})  # the container
    return [ComposableNodeContainer(
        package=PACKAGE, executable='component_container', name='pipeline_container',
        namespace=namespace, output='screen', parameters=files,
        composable_node_descriptions=nodes)]


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
            'same_host', default_value='dds', choices=['dds', 'iceoryx2'],
            description="transport.same_host: frames to the package's processes on this host "
                        'by DDS or iceoryx2 shared memory (zero-copy; DDS where it is missing)'),
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
    ])

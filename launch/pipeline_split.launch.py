"""
Launch the pipeline split: one process per stage, DDS between them.

For spreading the stages over processes or hosts, or for debugging one stage on its own.
Frames cross every hop as ROS messages (sensor_msgs/Image, TensorFrame, ...), so this costs
serialisation that the composed launch (pipeline.launch.py) avoids. The nodes, their names,
parameter files and remaps match edge_infer_ros.ros.graph.PIPELINE and the runner's split layout
(test/test_launch_files.py checks it).

    ros2 launch edge_infer_ros pipeline_split.launch.py
    ros2 launch edge_infer_ros pipeline_split.launch.py source:=v4l2 uri:=/dev/video0
    ros2 launch edge_infer_ros pipeline_split.launch.py same_host:=iceoryx2  # shared memory

The arguments ``model``, ``source``, ``uri`` and ``backend`` override the same parameters of
the files (they come after them); their defaults are the values of the shipped
config/pipeline.yaml. With a ``namespace``, a node reads only the sections of the parameter
files whose keys match its full name: ``/**/camera`` or ``/robot1/camera`` do, a plain
``camera`` matches ``/camera``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: the arguments and one process per stage."""
    share = FindPackageShare('edge_infer_ros')
    config = LaunchConfiguration('config')
    budget = LaunchConfiguration('budget')
    model = LaunchConfiguration('model')
    source = LaunchConfiguration('source')
    uri = LaunchConfiguration('uri')
    namespace = LaunchConfiguration('namespace')
    backend = LaunchConfiguration('backend')
    same_host = ParameterValue(LaunchConfiguration('same_host'), value_type=str)

    return LaunchDescription([
        DeclareLaunchArgument(
            'config', default_value=PathJoinSubstitution([share, 'config', 'pipeline.yaml']),
            description='parameter file of the stage nodes'),
        DeclareLaunchArgument(
            'budget', default_value=PathJoinSubstitution([share, 'config', 'budget.yaml']),
            description='parameter file of the budget monitor (latency budgets)'),
        DeclareLaunchArgument(
            'model', default_value='',
            description="ONNX model of preprocess and detector ('': the shipped model)"),
        DeclareLaunchArgument(
            'source', default_value='synthetic',
            choices=['synthetic', 'video', 'v4l2', 'folder', 'topic'],
            description='where the camera node gets frames'),
        DeclareLaunchArgument(
            'uri', default_value='',
            description='video file, V4L2 device or image folder of the camera source'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='namespace of every node and topic'),
        DeclareLaunchArgument(
            'backend', default_value='onnxruntime', choices=['onnxruntime', 'tensorrt'],
            description='inference backend of the detector (tensorrt falls back to onnxruntime)'),
        DeclareLaunchArgument(
            'same_host', default_value='dds', choices=['dds', 'iceoryx2'],
            description="transport.same_host: frames to the package's processes on this host "
                        'by DDS or iceoryx2 shared memory (zero-copy; DDS where it is missing)'),

        Node(
            package='edge_infer_ros',
            executable='camera_node',
            name='camera',
            namespace=namespace,
            output='screen',
            parameters=[
                config,
                {
                    'source': ParameterValue(source, value_type=str),
                    'uri': ParameterValue(uri, value_type=str),
                    'transport.same_host': same_host,
                },
            ],
        ),
        Node(
            package='edge_infer_ros',
            executable='preprocess_node',
            name='preprocess',
            namespace=namespace,
            output='screen',
            parameters=[
                config,
                {'model_path': ParameterValue(model, value_type=str)},
                {'transport.same_host': same_host},
            ],
        ),
        Node(
            package='edge_infer_ros',
            executable='detector_node',
            name='detector',
            namespace=namespace,
            output='screen',
            parameters=[
                config,
                {
                    'model_path': ParameterValue(model, value_type=str),
                    'backend': ParameterValue(backend, value_type=str),
                    'transport.same_host': same_host,
                },
            ],
        ),
        Node(
            package='edge_infer_ros',
            executable='nms_node',
            name='nms',
            namespace=namespace,
            output='screen',
            parameters=[config, {'transport.same_host': same_host}],
        ),
        Node(
            package='edge_infer_ros',
            executable='action_node',
            name='action',
            namespace=namespace,
            output='screen',
            parameters=[config, {'transport.same_host': same_host}],
        ),
        Node(
            package='edge_infer_ros',
            executable='budget_monitor',
            name='budget_monitor',
            namespace=namespace,
            output='screen',
            parameters=[budget, {'transport.same_host': same_host}],
        ),
    ])

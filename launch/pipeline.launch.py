"""
Launch the pipeline composed: every stage in one component container process.

Frames go from stage to stage by reference (zero-copy), not through DDS. The container
(``component_container``, see edge_infer_ros/ros/container.py) loads each node by plugin name
under the name the parameter files are keyed by; the list matches edge_infer_ros.ros.graph.PIPELINE
(test/test_launch_files.py checks it).

    ros2 launch edge_infer_ros pipeline.launch.py
    ros2 launch edge_infer_ros pipeline.launch.py source:=video uri:=/data/run1.mp4
    ros2 launch edge_infer_ros pipeline.launch.py backend:=tensorrt model:=/models/yolo.onnx

The parameter files and the launch-argument overrides go to the container as global ROS
arguments (``--ros-args --params-file ...``), which apply to every component in the order
given: first the files (each keyed by node name), then the overrides, so the overrides win.
They must not go to the container's own ``--params-file`` option: those files are node-local
arguments of each component and would take precedence over the overrides.

The arguments ``model``, ``source``, ``uri`` and ``backend`` override the same parameters of
the files; their defaults are the values of the shipped config/pipeline.yaml.

With a ``namespace``, a node reads only the sections of the parameter files whose keys match
its full name: ``/**/camera`` or ``/robot1/camera`` do, a plain ``camera`` matches ``/camera``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: the arguments and the one container process."""
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

        # No name=: a node name given to the container would rename every component in it.
        Node(
            package='edge_infer_ros',
            executable='component_container',
            namespace=namespace,
            output='screen',
            arguments=[
                'edge_infer_ros::Camera:camera',
                'edge_infer_ros::Preprocess:preprocess',
                'edge_infer_ros::Detector:detector',
                'edge_infer_ros::Nms:nms',
                'edge_infer_ros::Action:action',
                'edge_infer_ros::BudgetMonitor:budget_monitor',
            ],
            parameters=[
                config,
                budget,
                {
                    'model_path': ParameterValue(model, value_type=str),
                    'source': ParameterValue(source, value_type=str),
                    'uri': ParameterValue(uri, value_type=str),
                    'backend': ParameterValue(backend, value_type=str),
                    'transport.same_host': same_host,
                },
            ],
        ),
    ])

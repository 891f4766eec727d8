"""Install edge_infer_ros as an ament_python package (console scripts, launch, config, model)."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'edge_infer_ros'

# Stage nodes the component container can load by name (like rclcpp_components).
COMPONENTS = [
    'edge_infer_ros::Camera = edge_infer_ros.ros.nodes.camera:CameraNode',
    'edge_infer_ros::Preprocess = edge_infer_ros.ros.nodes.preprocess:PreprocessNode',
    'edge_infer_ros::Detector = edge_infer_ros.ros.nodes.detector:DetectorNode',
    'edge_infer_ros::Nms = edge_infer_ros.ros.nodes.nms:NmsNode',
    'edge_infer_ros::Action = edge_infer_ros.ros.nodes.action:ActionNode',
    'edge_infer_ros::BudgetMonitor = edge_infer_ros.ros.nodes.budget_monitor:BudgetMonitorNode',
]

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=['edge_infer_ros', 'edge_infer_ros.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        (os.path.join('share', PACKAGE, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*.yaml') + glob('config/*.xml')),
        (os.path.join('share', PACKAGE, 'models'), glob('models/*.onnx') + glob('models/*.json')),
        (os.path.join('share', PACKAGE, 'examples'), glob('examples/*.launch.py')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='edge_infer_ros maintainers',
    maintainer_email='maintainers@edge-infer-ros.dev',
    description='Camera-to-action perception pipeline with zero-copy handoff and latency budgets.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'camera_node = edge_infer_ros.ros.nodes.camera:main',
            'preprocess_node = edge_infer_ros.ros.nodes.preprocess:main',
            'detector_node = edge_infer_ros.ros.nodes.detector:main',
            'nms_node = edge_infer_ros.ros.nodes.nms:main',
            'action_node = edge_infer_ros.ros.nodes.action:main',
            'budget_monitor = edge_infer_ros.ros.nodes.budget_monitor:main',
            'component_container = edge_infer_ros.ros.component_container:main',
            'pipeline = edge_infer_ros.runner:main',
            'quantize_model = edge_infer_ros.stages.quantize:main',
            'evaluate_model = edge_infer_ros.stages.quantize:evaluate_main',
        ],
        'edge_infer_ros.components': COMPONENTS,
    },
)

"""Install edge_infer_ros as an ament_python package (console scripts, launch, config, model)."""

from glob import glob
import os
import runpy

from setuptools import find_packages, setup

PACKAGE = 'edge_infer_ros'

# The nodes' components (loadable by name, like rclcpp_components) and console scripts come
# from the pipeline's shape, read as a plain file: nothing of the package imports yet here.
NODES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), PACKAGE,
                                    'core', 'shape.py'))['entry_points']()

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
        'console_scripts': NODES['console_scripts'] + [
            'component_container = edge_infer_ros.ros.component_container:main',
            'pipeline = edge_infer_ros.runner:main',
            'quantize_model = edge_infer_ros.stages.quantize_cli:main',
            'evaluate_model = edge_infer_ros.stages.quantize_cli:evaluate_main',
        ],
        'edge_infer_ros.components': NODES['edge_infer_ros.components'],
    },
)

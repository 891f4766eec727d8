"""
The package under the real ROS 2 tools: ros2 launch, ros2 component, ros2 param, ros2 lifecycle.

What a robotics engineer runs, run here: every launch file with frames flowing (commands on
``cmd_vel`` and ``/diagnostics`` arrive in this test's own node), the composed pipeline listed
by ``ros2 component list``, components loaded and unloaded into it, parameters set (valid,
out of range, wrong type), a lifecycle round trip with a start-only parameter, a user's launch
file that includes ``pipeline.launch.py`` with its camera topic, and the shutdowns that
``ros2 launch``, systemd and a terminal's Ctrl-C deliver (SIGINT to the whole process group
plus launch's own, SIGTERM), each with every process's exit code read from launch's log.

The tools come from the environment (a real ROS 2 install) or from build/ros2_tools, which
scripts/setup.sh builds from ../shared/ros2_tools; without either, the module skips and says so.
Each launch is shared by several checks to keep the time down.
"""

from __future__ import annotations

from collections import defaultdict
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator

from edge_infer_ros.core.shape import PIPELINE_SHAPE
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from support import ros2_tools

try:
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import TwistStamped
    import launch_ros  # noqa: F401 - only: is launch_ros there?
    from sensor_msgs.msg import Image
    TOOLS = shutil.which('ros2')
    WHY_NOT = '' if TOOLS else 'no ros2 command on PATH'
except ImportError as error:  # pragma: no cover - depends on the environment
    TOOLS, WHY_NOT = None, str(error)

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module', autouse=True)
def tools() -> None:
    """Skip where no ROS 2 tools exist anywhere; fail where setup.sh could have built them."""
    if not TOOLS:
        ros2_tools.missing(f'the ROS 2 tools (ros2, launch_ros: {WHY_NOT})')


STAGES = tuple(node.name for node in PIPELINE_SHAPE)
#: A ROS domain of this module's own (201-231, which scripts/test.sh never picks): the nodes
#: that earlier tests of this pytest process leave in the graph must not answer the CLI here.
DOMAIN = 201 + int(os.environ.get('ROS_DOMAIN_ID') or 0) % 31
ENV = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN))
START_TIMEOUT = 90.0  # launch + model load on a loaded 2-core machine
STOP_TIMEOUT = 15.0   # launch escalates to SIGTERM after 5 s, SIGKILL after 10 s more
#: A process that exits cleanly tells the graph it is gone, but over UDP that one message can
#: be lost (CI saw it on Jazzy); the daemon then forgets the node only when the participant's
#: lease runs out, 20 s by default on Fast DDS, checked on a timer of its own.
GRAPH_FORGET_TIMEOUT = 45.0


#: What the CLI prints when its (the daemon's) view of the graph lacks a node for a moment.
NOT_DISCOVERED = ('Unable to find container node', 'Node not found')


def ros2(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run one ros2 CLI command; its output (stdout and stderr) in ``.stdout``."""
    for _ in range(3):
        done = subprocess.run(['ros2', *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, env=ENV)
        # Discovery is eventually consistent: on a loaded machine the daemon's graph can
        # miss a node that runs (seen in the full suite); ask again before judging.
        if not any(text in done.stdout for text in NOT_DISCOVERED):
            return done
        time.sleep(2.0)
    return done


def assert_gone_from_graph(node_pattern: str) -> None:
    """
    Assert that the graph loses every node matching the pattern.

    The daemon's view first. A daemon that missed both the goodbye and the lease's end (CI saw
    it keep two nodes of exited processes for over 45 s) is checked against a fresh look
    without it, which sees only the participants alive now.
    """
    def gone(*options: str) -> bool:
        return not re.search(node_pattern, ros2('node', 'list', *options).stdout)
    if poll(gone, GRAPH_FORGET_TIMEOUT):
        return
    assert gone('--no-daemon') and gone('--no-daemon'), ros2('node', 'list', '--no-daemon').stdout


def poll(condition: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Return the first true value of condition() within the timeout (or the last one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


#: Run a command with SIGINT and SIGQUIT at their defaults, as a shell in a terminal does. A
#: test run started in the background (``cmd &`` without job control, as CI runners may) has
#: them ignored, and an ignored signal stays ignored across exec: ``ros2 launch`` would then
#: never see the Ctrl-C these tests send it.
AS_IN_A_TERMINAL = [sys.executable, '-c',
                    'import os, signal, sys\n'
                    'for s in (signal.SIGINT, signal.SIGQUIT): signal.signal(s, signal.SIG_DFL)\n'
                    'os.execvp(sys.argv[1], sys.argv[1:])']


class Launch:
    """One ``ros2 launch`` in a process group of its own, its output in a file."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        self.stream = open(log, 'w', encoding='utf-8')
        self.process = subprocess.Popen([*AS_IN_A_TERMINAL, 'ros2', 'launch', *args],
                                        stdout=self.stream,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env=ENV)

    def output(self) -> str:
        """Return everything launch and its processes printed so far."""
        return self.log.read_text(encoding='utf-8', errors='replace')

    def double_sigint(self) -> None:
        """SIGINT the group, as Ctrl-C and kill -INT -PGID do: launch forwards a second one."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for launch to exit; its exit code."""
        try:
            return self.process.wait(timeout)
        finally:
            self.stream.close()

    def group_alive(self) -> bool:
        """Tell whether any process of launch's group still runs (launch's children too)."""
        self.process.poll()  # reap launch itself: a zombie still counts as a group member
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """Last resort of a teardown: nothing may stay running after the test."""
        if self.group_alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(10)
        self.stream.close()


def assert_clean_exit(launch: Launch, rc: int, processes: int, since: int = 0) -> None:
    """Launch exited 0, every process 'finished cleanly', no traceback, no error log."""
    text = launch.output()
    assert rc == 0, text[-3000:]
    assert 'Traceback' not in text, text[-3000:]
    assert '[ERROR]' not in text[since:], text[since:][-3000:]  # from the shutdown on
    died = re.findall(r'process has died \[.*', text)
    assert not died, died
    assert text.count('process has finished cleanly') == processes, text[-3000:]


class Probe:
    """This test's own node: counts what arrives on the pipeline's outputs."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=DOMAIN)
        self.node = rclpy.create_node('real_tools_probe', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: B902 - context shut down at close
            pass

    def listen(self, topic: str, msg_type: Any, qos: Any = 10) -> None:
        """Keep every message of a topic (the last 100)."""
        def keep(msg: Any) -> None:
            with self.lock:
                self.received[topic] = self.received[topic][-99:] + [msg]
        self.node.create_subscription(msg_type, topic, keep, qos)

    def messages(self, topic: str) -> list[Any]:
        """Return the messages of a topic received so far."""
        with self.lock:
            return list(self.received[topic])

    def clear(self, topic: str) -> None:
        """Forget what a topic brought."""
        with self.lock:
            self.received[topic] = []

    def status_names(self, topic: str = '/diagnostics') -> set[str]:
        """Return the names of the diagnostics statuses received."""
        return {s.name for m in self.messages(topic) for s in m.status}

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture(scope='module')
def daemon() -> Iterator[None]:
    """ros2cli's daemon serves the CLI here; stop it so that nothing stays running."""
    yield
    ros2('daemon', 'stop', timeout=30)


@pytest.fixture(scope='module')
def probe() -> Iterator[Probe]:
    """One listening node for the module."""
    node = Probe()
    node.listen('/cmd_vel', TwistStamped)
    node.listen('/diagnostics', DiagnosticArray)
    yield node
    node.close()


def listed_components() -> str:
    """Return what ``ros2 component list`` prints (empty while discovery is incomplete)."""
    return ros2('component', 'list', timeout=60).stdout


@pytest.fixture(scope='module')
def composed(tmp_path_factory: pytest.TempPathFactory, daemon: None,
             probe: Probe) -> Iterator[Launch]:
    """``ros2 launch edge_infer_ros pipeline.launch.py``, up with its six components."""
    probe.listen('/image_raw', Image, qos_profile_sensor_data)
    launch = Launch(tmp_path_factory.mktemp('composed') / 'launch.log',
                    'edge_infer_ros', 'pipeline.launch.py')
    try:
        up = poll(lambda: launch.output().count('Loaded node') >= 6
                  or launch.process.poll() is not None, START_TIMEOUT)
        assert up and launch.process.poll() is None, launch.output()[-3000:]
        yield launch
    finally:
        launch.kill()


def test_composed_launch_runs_six_components_and_frames_flow(composed: Launch,
                                                             probe: Probe) -> None:
    listed = poll(lambda: (out := listed_components()).count('/') >= 7 and out, 60)
    assert listed, 'ros2 component list printed nothing'
    lines = listed.splitlines()
    assert lines[0] == '/pipeline_container', listed
    assert [line.split() for line in lines[1:]] == \
        [[str(i), f'/{name}'] for i, name in enumerate(STAGES, start=1)], listed
    assert poll(lambda: probe.messages('/cmd_vel'), 30), 'no command on /cmd_vel'
    wanted = {f'/{name}: ' for name in STAGES}
    assert poll(lambda: all(any(s.startswith(w) for s in probe.status_names())
                            for w in wanted), 30), probe.status_names()
    # The shipped Fast DDS profile reaches the container's environment.
    pid = re.search(r'component_container-1\]: process started with pid \[(\d+)\]',
                    composed.output()).group(1)
    environ = Path(f'/proc/{pid}/environ').read_bytes().split(b'\0')
    assert any(e.startswith(b'FASTDDS_DEFAULT_PROFILES_FILE=') and
               e.endswith(b'/config/fastdds_shm.xml') for e in environ), environ


def test_component_load_list_unload(composed: Launch) -> None:
    loaded = ros2('component', 'load', '/pipeline_container', 'edge_infer_ros',
                  'edge_infer_ros::Nms', '-n', 'nms_extra', '--node-namespace', '/extra',
                  '-r', 'candidates:=/candidates', '-p', 'queue_depth:=3')
    assert loaded.returncode == 0, loaded.stdout
    match = re.search(r"Loaded component (\d+) into '/pipeline_container' container node as "
                      r"'/extra/nms_extra'", loaded.stdout)
    assert match, loaded.stdout
    unique_id = match.group(1)
    assert unique_id == '7'
    assert f'{unique_id}  /extra/nms_extra' in listed_components()
    depth = ros2('param', 'get', '/extra/nms_extra', 'queue_depth')
    assert 'Integer value is: 3' in depth.stdout, depth.stdout
    unloaded = ros2('component', 'unload', '/pipeline_container', unique_id)
    assert f"Unloaded component {unique_id} from '/pipeline_container'" in unloaded.stdout
    assert '/extra/nms_extra' not in listed_components()
    again = ros2('component', 'unload', '/pipeline_container', unique_id)
    assert f'no node found with unique_id: {unique_id}' in again.stdout.lower(), again.stdout


@pytest.mark.parametrize('package, plugin, extra, reason', [
    ('edge_infer_ros', 'os::system', [], 'failed to find class with the requested plugin'),
    ('demo_nodes_cpp', 'demo_nodes_cpp::Talker', [], 'loads only edge_infer_ros plugins'),
    ('edge_infer_ros', 'edge_infer_ros::Nms', ['-n', 'nms_bad', '-p', 'queue_depth:=0'],
     'parameter queue_depth out of range'),
    ('edge_infer_ros', 'edge_infer_ros::Nms', ['-n', 'nms'], 'a node named /nms is loaded'),
])
def test_component_load_refusals(composed: Launch, package: str, plugin: str,
                                 extra: list[str], reason: str) -> None:
    refused = ros2('component', 'load', '/pipeline_container', package, plugin, *extra)
    assert refused.returncode != 0, refused.stdout
    assert reason in refused.stdout.lower(), refused.stdout
    assert listed_components().count('\n  ') == len(STAGES)  # nothing left behind


def test_param_set_valid_out_of_range_and_wrong_type(composed: Launch) -> None:
    ok = ros2('param', 'set', '/detector', 'score_threshold', '0.4')
    assert 'Set parameter successful' in ok.stdout, ok.stdout
    assert 'Double value is: 0.4' in ros2('param', 'get', '/detector', 'score_threshold').stdout
    high = ros2('param', 'set', '/detector', 'score_threshold', '2.0')
    assert 'Setting parameter failed' in high.stdout, high.stdout
    wrong = ros2('param', 'set', '/detector', 'score_threshold', 'high')
    assert 'Setting parameter failed' in wrong.stdout, wrong.stdout
    assert 'Double value is: 0.4' in ros2('param', 'get', '/detector', 'score_threshold').stdout
    described = ros2('param', 'describe', '/camera', 'width').stdout
    assert 'start-only' in described and 'Min value: 16' in described, described


def lifecycle_set(node: str, transition: str, state: str) -> None:
    """Run ``ros2 lifecycle set`` and check that the node reached the state."""
    for _ in range(2):
        try:
            done = ros2('lifecycle', 'set', node, transition, timeout=40)
            if 'Transitioning successful' in done.stdout:
                return
        except subprocess.TimeoutExpired:
            # Seen once under a heavily loaded suite: the CLI waited for a service response
            # that never came (a client/server discovery race of the middleware). The state
            # tells whether the transition itself happened.
            pass
        if f'{state} [' in ros2('lifecycle', 'get', node).stdout:
            return
    pytest.fail(f'ros2 lifecycle set {node} {transition} did not reach {state}')


def test_lifecycle_round_trip_applies_start_only_parameter_at_configure(
        composed: Launch, probe: Probe) -> None:
    assert 'active [3]' in ros2('lifecycle', 'get', '/camera').stdout
    refused = ros2('param', 'set', '/camera', 'width', '320')
    assert 'Setting parameter failed' in refused.stdout and 'start-only' in refused.stdout
    lifecycle_set('/camera', 'deactivate', 'inactive')
    assert 'inactive [2]' in ros2('lifecycle', 'get', '/camera').stdout
    assert 'Set parameter successful' in ros2('param', 'set', '/camera', 'width', '320').stdout
    for transition, state in (('cleanup', 'unconfigured'), ('configure', 'inactive'),
                              ('activate', 'active')):
        lifecycle_set('/camera', transition, state)
    assert 'active [3]' in ros2('lifecycle', 'get', '/camera').stdout
    probe.clear('/image_raw')
    probe.clear('/cmd_vel')
    assert poll(lambda: any(m.width == 320 for m in probe.messages('/image_raw')), 30), \
        [m.width for m in probe.messages('/image_raw')]
    assert poll(lambda: probe.messages('/cmd_vel'), 30), 'frames stopped after the round trip'


def test_composed_double_sigint_every_process_exits_zero(composed: Launch) -> None:
    since = len(composed.output())  # refused loads above logged errors, as they should
    composed.double_sigint()
    assert_clean_exit(composed, composed.wait(), processes=1, since=since)
    # No phantom: the daemon forgets the container and its six nodes.
    assert_gone_from_graph(r'/(pipeline_container|camera|nms)\b')


def test_a_second_ctrl_c_after_the_container_exited_leaves_launch_exit_code_zero(
        tmp_path: Path) -> None:
    # A second Ctrl-C pressed while launch tears down (its child already gone): launch
    # itself died by SIGINT (-2) in the composed launch, whose process holds an rclpy context.
    launch = Launch(tmp_path / 'launch.log', 'edge_infer_ros', 'pipeline.launch.py',
                    'namespace:=late')
    try:
        assert poll(lambda: "Loaded node '/late/budget_monitor'" in launch.output() or
                    launch.process.poll() is not None, START_TIMEOUT) and \
            launch.process.poll() is None, launch.output()[-3000:]
        since = len(launch.output())
        launch.double_sigint()
        assert poll(lambda: 'process has finished cleanly' in launch.output(), STOP_TIMEOUT,
                    0.01), launch.output()[-3000:]
        if launch.process.poll() is None:
            launch.process.send_signal(signal.SIGINT)  # the second Ctrl-C, to launch
        assert_clean_exit(launch, launch.wait(), processes=1, since=since)
    finally:
        launch.kill()


def test_split_launch_frames_flow_and_double_sigint_exits_zero(
        tmp_path: Path, daemon: None, probe: Probe) -> None:
    probe.clear('/cmd_vel')
    launch = Launch(tmp_path / 'launch.log', 'edge_infer_ros', 'pipeline_split.launch.py')
    try:
        assert poll(lambda: probe.messages('/cmd_vel') or launch.process.poll() is not None,
                    START_TIMEOUT) and launch.process.poll() is None, launch.output()[-3000:]

        def every_stage() -> str:
            out = ros2('node', 'list').stdout
            return out if all(f'/{name}\n' in out for name in STAGES) else ''
        assert poll(every_stage, 30), ros2('node', 'list').stdout
        launch.double_sigint()
        assert_clean_exit(launch, launch.wait(), processes=6)
        assert_gone_from_graph(r'/(camera|preprocess|detector|nms|action)\b')
    finally:
        launch.kill()


def test_sigterm_to_the_group_stops_every_process(tmp_path: Path, probe: Probe) -> None:
    # systemd (KillMode=control-group) and docker stop send SIGTERM to every process. Launch
    # itself aborts on SIGTERM (upstream: "can result in orphaned processes"); the nodes must
    # still stop on their own, at once and without a traceback.
    launch = Launch(tmp_path / 'launch.log', 'edge_infer_ros', 'pipeline_split.launch.py',
                    'namespace:=term')
    try:
        wanted = {f'/term/{name}: ' for name in STAGES}
        assert poll(lambda: all(any(s.startswith(w) for s in probe.status_names())
                                for w in wanted) or launch.process.poll() is not None,
                    START_TIMEOUT) and launch.process.poll() is None, launch.output()[-3000:]
        os.killpg(launch.process.pid, signal.SIGTERM)
        assert poll(lambda: not launch.group_alive(), STOP_TIMEOUT, 0.2), launch.output()
        assert 'Traceback' not in launch.output()
    finally:
        launch.kill()


def executable(name: str) -> str:
    """Return the installed path of one of the package's executables."""
    from ament_index_python.packages import get_package_prefix
    return os.path.join(get_package_prefix('edge_infer_ros'), 'lib', 'edge_infer_ros', name)


@pytest.mark.parametrize('name, command', [
    ('term_camera', ['camera_node', '--ros-args', '-r', '__node:=term_camera']),
    ('term_container_camera',
     ['component_container', 'edge_infer_ros::Camera:term_container_camera']),
])
def test_sigterm_ends_a_node_process_with_exit_code_zero(name: str, command: list[str],
                                                         probe: Probe) -> None:
    process = subprocess.Popen([executable(command[0]), *command[1:]], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        assert poll(lambda: any(s.startswith(f'/{name}: ') for s in probe.status_names())
                    or process.poll() is not None, START_TIMEOUT) and process.poll() is None
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=STOP_TIMEOUT)
        assert process.returncode == 0, output
        assert 'Traceback' not in output and '[ERROR]' not in output, output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


USER_LAUNCH = """
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def include(name, **arguments):
    path = PathJoinSubstitution([FindPackageShare('edge_infer_ros'), 'launch', name])
    return IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                    launch_arguments=arguments.items())


def generate_launch_description():
    return LaunchDescription([
        include('pipeline.launch.py', source='topic', image_topic='/robot/front/image_raw',
                namespace='robot1', monitor='false', image_qos='reliable'),
        include('budget_monitor.launch.py', namespace='robot1'),
    ])
"""


def test_user_launch_includes_pipeline_with_its_camera_topic(
        tmp_path: Path, daemon: None, probe: Probe) -> None:
    user = tmp_path / 'robot.launch.py'
    user.write_text(USER_LAUNCH, encoding='utf-8')
    probe.listen('/robot1/cmd_vel', TwistStamped)
    camera = probe.node.create_publisher(Image, '/robot/front/image_raw', 10)
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[60:180, 100:220] = (40, 200, 40)
    stop = threading.Event()

    def drive() -> None:  # the robot's camera driver, at 15 Hz
        while not stop.wait(1 / 15):
            msg = Image(height=240, width=320, encoding='bgr8', step=960,
                        data=frame.tobytes())
            msg.header.stamp = probe.node.get_clock().now().to_msg()
            camera.publish(msg)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    launch = Launch(tmp_path / 'launch.log', str(user))
    try:
        assert poll(lambda: probe.messages('/robot1/cmd_vel') or
                    launch.process.poll() is not None, START_TIMEOUT) \
            and launch.process.poll() is None, launch.output()[-3000:]
        names = poll(lambda: '/robot1/budget_monitor' in (out := ros2('node', 'list').stdout)
                     and out, 30)
        assert names and names.count('/robot1/budget_monitor\n') == 1, names
        assert 'budget_monitor' not in listed_components()  # monitor:=false: not composed
        launch.process.send_signal(signal.SIGINT)  # one Ctrl-C to launch alone
        assert_clean_exit(launch, launch.wait(), processes=2)
    finally:
        stop.set()
        driver.join(2)
        probe.node.destroy_publisher(camera)
        launch.kill()


def test_image_transport_compressed_reads_a_drivers_jpeg(tmp_path: Path, daemon: None,
                                                         probe: Probe) -> None:
    """image_transport:=compressed: a driver's <topic>/compressed, in image_transport's format."""
    import cv2
    from edge_infer_ros_msgs.msg import DetectionArray
    from sensor_msgs.msg import CompressedImage
    probe.listen('/robot2/detections', DetectionArray)  # only frames make detections
    camera = probe.node.create_publisher(CompressedImage, '/robot/cam/image_raw/compressed', 10)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[120:360, 200:440] = (40, 200, 40)
    jpeg = cv2.imencode('.jpg', frame)[1].tobytes()
    stop = threading.Event()

    def drive() -> None:  # e.g. usb_cam with pixel_format mjpeg, at 15 Hz
        while not stop.wait(1 / 15):
            msg = CompressedImage(format='bgr8; jpeg compressed bgr8', data=jpeg)
            msg.header.stamp = probe.node.get_clock().now().to_msg()
            camera.publish(msg)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    launch = Launch(tmp_path / 'launch.log', 'edge_infer_ros', 'pipeline.launch.py',
                    'source:=topic', 'image_topic:=/robot/cam/image_raw',
                    'image_transport:=compressed', 'namespace:=robot2', 'monitor:=false')
    try:
        assert poll(lambda: probe.messages('/robot2/detections') or
                    launch.process.poll() is not None, START_TIMEOUT) \
            and launch.process.poll() is None, launch.output()[-3000:]
        frame_size = probe.messages('/robot2/detections')[-1]
        assert (frame_size.image_width, frame_size.image_height) == (640, 480)
        launch.process.send_signal(signal.SIGINT)
        assert_clean_exit(launch, launch.wait(), processes=1)
    finally:
        stop.set()
        driver.join(2)
        probe.node.destroy_publisher(camera)
        launch.kill()


def test_every_executable_answers_help() -> None:
    for executable in ('camera_node', 'preprocess_node', 'detector_node', 'nms_node',
                       'action_node', 'budget_monitor', 'component_container', 'pipeline'):
        done = subprocess.run(['ros2', 'run', 'edge_infer_ros', executable, '--help'],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=60, env=ENV)
        assert done.returncode == 0 and 'usage:' in done.stdout, (executable, done.stdout)
    listed = subprocess.run(['ros2', 'run', 'edge_infer_ros', 'component_container',
                             '--list-types'], stdout=subprocess.PIPE, text=True, timeout=60,
                            env=ENV)
    assert listed.stdout.splitlines()[1:] == sorted(
        f'  edge_infer_ros::{p}' for p in ('Action', 'BudgetMonitor', 'Camera', 'Detector',
                                           'Nms', 'Preprocess')), listed.stdout


def test_model_tools_run_as_a_user_runs_them(tmp_path: Path) -> None:
    """evaluate_model and quantize_model by ``ros2 run``: a result, or a refusal with exit 2."""
    done = subprocess.run(['ros2', 'run', 'edge_infer_ros', 'evaluate_model', '--model', 'int8',
                           '--frames', '5'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120, env=ENV)
    assert done.returncode == 0 and '(int8)' in done.stdout, done.stdout
    bad = tmp_path / 'model.onnx'
    bad.write_bytes(b'garbage')
    done = subprocess.run(['ros2', 'run', 'edge_infer_ros', 'quantize_model', '--model', str(bad),
                           '--calibration', str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120, env=ENV)
    assert done.returncode == 2 and 'not a valid ONNX model' in done.stdout, done.stdout


@pytest.mark.parametrize('launch_file', ['pipeline.launch.py', 'pipeline_split.launch.py'])
def test_use_sim_time_reaches_every_node(tmp_path: Path, daemon: None, launch_file: str) -> None:
    launch = Launch(tmp_path / 'launch.log', 'edge_infer_ros', launch_file, 'namespace:=simt',
                    'use_sim_time:=true')
    try:
        def every_node() -> str:
            out = ros2('node', 'list').stdout
            return out if all(f'/simt/{name}\n' in out for name in STAGES) else ''
        assert poll(lambda: every_node() or launch.process.poll() is not None,
                    START_TIMEOUT) and launch.process.poll() is None, launch.output()[-3000:]
        for name in STAGES:
            got = ros2('param', 'get', f'/simt/{name}', 'use_sim_time').stdout
            assert 'Boolean value is: True' in got, (name, got)
    finally:
        launch.double_sigint()
        launch.wait()
        launch.kill()

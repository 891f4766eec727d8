"""
The camera node replays a bag (written here by rosbags' writer) through the whole pipeline.

A 15 Hz recording from 2020: replayed once at 15 Hz, stamped at replay so the deadline
verdicts measure the pipeline (not six years), or with publish_clock on simulated time.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support.bags import STAMP_2020_NS, storage_file, write_bag
from support.waiting import wait_for

pytest.importorskip('rosbags')

NODES = ('camera', 'preprocess', 'detector', 'nms', 'action', 'budget_monitor')
FRAMES = 45
#: A name of this test's own: other pipelines on the same DDS domain must not mix in.
CAMERA = 'bag_replay_camera'


def _replay(composed: Any, uri: str, sim: bool = False) -> tuple[dict[str, Any], list]:
    overrides: dict[str, dict[str, Any]] = {
        'camera': {'source': 'bag', 'uri': uri, 'bag_topic': '/camera/image_raw',
                   'max_frames': 0, 'publish_clock': sim, 'frame_id': CAMERA},
        'budget_monitor': {'deadline_ms': 200.0},
        'action': {'max_frame_age_s': 0.5}}
    if sim:
        for name in NODES:
            overrides.setdefault(name, {})['use_sim_time'] = True
    container, nodes = composed(frames=0, overrides=overrides, names=set(NODES), start=False)
    traces: list = []
    lock = threading.Lock()

    def keep(trace: Any) -> None:
        if trace.camera == CAMERA:
            with lock:
                traces.append(trace)
    nodes['budget_monitor'].trace_hooks.append(keep)
    problems = container.start()
    assert not problems, problems
    assert nodes['camera'].wait_until_done(60.0)
    assert wait_for(lambda: all(n.inputs[0].idle() for n in
                                (nodes[k] for k in NODES[1:])), 10.0)
    return nodes, traces


@pytest.mark.parametrize('storage, msgtype', [
    ('mcap', 'sensor_msgs/msg/Image'), ('db3', 'sensor_msgs/msg/Image'),
    ('mcap', 'sensor_msgs/msg/CompressedImage')])
def test_a_15_hz_bag_replays_once_at_15_hz_with_its_deadlines_met(
        composed, tmp_path, storage: str, msgtype: str) -> None:
    bag = write_bag(tmp_path / 'run', storage, frames=FRAMES, rate_hz=15.0, msgtype=msgtype)
    nodes, traces = _replay(composed, str(storage_file(bag) if storage == 'db3' else bag))
    camera = nodes['camera']
    assert camera.captured == FRAMES and camera.source_ended  # once: loop is off
    values = dict(camera.diagnostic_values())
    assert 'end of bag' in values['source_end'] and values['bag_loops'] == '0'
    assert int(values['recorded_stamp_ns']) == STAMP_2020_NS + (FRAMES - 1) * 10**9 // 15
    # Stamped at replay by the camera: the pace it replayed at, from its own stamps.
    first, last = traces[0], traces[-1]
    rate = (last.seq - first.seq) / ((last.stamp_ns - first.stamp_ns) / 1e9)
    assert 13.5 <= rate <= 16.5, rate
    camera_report = nodes['budget_monitor'].summary()['cameras'][CAMERA]
    assert camera_report['frames'] >= FRAMES // 2, camera_report
    assert camera_report['deadline_misses'] <= 0.1 * camera_report['frames'], camera_report
    counts = nodes['action'].commander.counts
    assert counts.stale_frames <= 0.1 * counts.commands, vars(counts)


def test_publish_clock_keeps_the_recorded_stamps_on_sim_time(composed, tmp_path) -> None:
    bag = write_bag(tmp_path / 'run', 'mcap', frames=FRAMES, rate_hz=15.0)
    nodes, traces = _replay(composed, str(bag), sim=True)
    assert traces and all(STAMP_2020_NS <= t.stamp_ns < STAMP_2020_NS + 4 * 10**9
                          for t in traces)
    assert dict(nodes['camera'].diagnostic_values())['stamps'].startswith('recorded')
    report = nodes['budget_monitor'].summary()['cameras'][CAMERA]
    assert report['deadline_misses'] <= 0.1 * report['frames'], report
    counts = nodes['action'].commander.counts
    assert counts.stale_frames <= 0.1 * counts.commands, vars(counts)


def test_runner_takes_fps_from_its_config_unless_given(tmp_path) -> None:
    from edge_infer_ros.runner import parse_args
    config = tmp_path / 'pipeline.yaml'
    config.write_text('/**/camera:\n  ros__parameters:\n    fps: 15.0\n')
    options = parse_args(['--config', str(config)])
    assert options.rate() == 15.0 and 'fps' not in options.overrides()['camera']
    options = parse_args(['--config', str(config), '--fps', '20'])
    assert options.rate() == 20.0 and options.overrides()['camera']['fps'] == 20.0


def test_runner_replays_a_whole_bag_and_reports_it(
        tmp_path, planted_model, monkeypatch) -> None:
    from edge_infer_ros.runner import parse_args, run
    from edge_infer_ros.runs.report import format_report
    # A domain of its own: another pipeline on this host must not add its frames to the count.
    monkeypatch.setenv('ROS_DOMAIN_ID', '42')
    bag = write_bag(tmp_path / 'run', 'mcap', frames=30, rate_hz=15.0, width=160, height=120)
    options = parse_args(['--bag', str(bag), '--bag-topic', '/camera/image_raw',
                          '--model', planted_model.path, '--timeout', '60'])
    assert options.frames == 0 and options.overrides()['camera']['source'] == 'bag'
    report = run(options)
    assert report['frames']['captured'] == 30 and report['accounting_ok'], report['frames']
    # Stamped at replay: latencies of the pipeline, not of the recording's age.
    assert report['end_to_end']['p50_ms'] < 1000.0, report['end_to_end']
    assert f'bag {bag} at its recorded pace' in format_report(report)


def test_a_15_fps_video_replays_once_at_15_hz(composed, tmp_path) -> None:
    import cv2
    import numpy as np
    path = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 15.0, (160, 120))
    for index in range(FRAMES):
        writer.write(np.full((120, 160, 3), index * 5 % 256, np.uint8))
    writer.release()
    overrides = {'camera': {'source': 'video', 'uri': str(path), 'max_frames': 0,
                            'frame_id': CAMERA, 'fps': 30.0}}
    container, nodes = composed(frames=0, overrides=overrides, names={'camera'}, start=False)
    stamps: list[int] = []
    original = nodes['camera']._send

    def send(envelope, loan):
        stamps.append(envelope.stamp_ns)
        return original(envelope, loan)
    nodes['camera']._send = send
    assert not container.start()
    assert nodes['camera'].wait_until_done(30.0)
    assert nodes['camera'].captured == FRAMES and nodes['camera'].source_ended  # once
    rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)
    assert 13.5 <= rate <= 16.5, rate  # the file's 15 fps, not the fps parameter's 30

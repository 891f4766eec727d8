"""
One validation gate per input: DDS, in-process and shared memory refuse the same frames.

Issue 29: over iceoryx2 an inverted box, score 7.0, class -5 or a 0x0 image reached
/detections and malformed samples were counted nowhere. Every refusal kind is fed to a real
NMS node through each transport; each must be refused with the same reason and counted.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import time
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticStatus
from edge_infer_ros.core import shm
from edge_infer_ros.core.frame import Envelope, StageTiming
from edge_infer_ros.core.geometry import Letterbox
from edge_infer_ros.core.handoff import LocalBus, StagePublisher
from edge_infer_ros.core.payloads import CandidatePayload
from edge_infer_ros.ros import convert
from edge_infer_ros_msgs.msg import CandidateArray
import numpy as np
import pytest
from rclpy.node import Node
from support.outside import Outside
from support.waiting import wait_for

SEC = 1_000_000_000
NAMES = ('ball', 'box', 'cone', 'person')
MAX_CANDIDATES = 8

needs_iceoryx2 = pytest.mark.skipif(shm.unavailable_reason() is not None,
                                    reason=str(shm.unavailable_reason()))


def _candidates(frame_id: str, stamp_ns: int, boxes=((10.0, 10.0, 50.0, 50.0),),
                scores=(0.9,), class_ids=(0,), scale=0.5, size=(640, 480), camera='cam',
                trace: tuple = ()) -> Envelope:
    payload = CandidatePayload(np.array(boxes, np.float32).reshape(-1, 4),
                               np.array(scores, np.float32), np.array(class_ids, np.int32),
                               NAMES, Letterbox(scale, 0.0, 40.0), size[0], size[1], 'test')
    return Envelope(camera, 1, stamp_ns, frame_id, trace, payload)


#: Every refusal kind a candidate frame can have: kind -> frame (from frame_id and stamp).
KINDS: dict[str, Callable[[str, int], Envelope]] = {
    'zero_stamp': lambda f, s: _candidates(f, 0),
    'negative_stamp': lambda f, s: _candidates(f, -5 * SEC),
    'future_stamp': lambda f, s: _candidates(f, s + 30 * SEC),
    'bad_letterbox': lambda f, s: _candidates(f, s, scale=0.0),
    'bad_image_size': lambda f, s: _candidates(f, s, size=(0, 0)),
    'non_finite': lambda f, s: _candidates(f, s, boxes=((10.0, float('nan'), 50.0, 50.0),)),
    'box_outside_image': lambda f, s: _candidates(f, s, boxes=((1e30, 10.0, 2e30, 50.0),)),
    'inverted_box': lambda f, s: _candidates(f, s, boxes=((50.0, 10.0, 10.0, 50.0),)),
    'score_out_of_range': lambda f, s: _candidates(f, s, scores=(7.0,)),
    'class_id_out_of_range': lambda f, s: _candidates(f, s, class_ids=(-5,)),
    'too_many': lambda f, s: _candidates(f, s, boxes=((10.0, 10.0, 50.0, 50.0),) * 9,
                                         scores=(0.9,) * 9, class_ids=(0,) * 9),
    'bad_name': lambda f, s: _candidates(f, s, camera='c' * 300),
    'bad_trace': lambda f, s: _candidates(f, s,
                                          trace=(StageTiming('preprocess', 'n', 0, 0, 0),)),
}


def _malformed_shm(publisher: shm.ShmPublisher, stamp_ns: int) -> None:
    """Send a crafted sample: an unknown payload kind (any local process can write one)."""
    meta = json.dumps({'camera': 'cam', 'frame_id': 'x', 'fields': {}, 'trace': []}).encode()
    with publisher._lock:
        sample = publisher._publisher.loan_slice_uninit(publisher.meta_room + 16)
        ctypes.memmove(sample.payload_ptr, meta, len(meta))
        header = sample.user_header().contents
        header.pub_seq, header.seq, header.stamp_ns = publisher._pub_seq, 1, stamp_ns
        header.meta_len, header.data_offset, header.data_len = len(meta), publisher.meta_room, 16
        header.ndim, header.shape[0], header.dtype, header.kind = 1, 16, b'|u1', b'bogus'
        sample.assume_init().send()
        publisher._notifier.notify()
        publisher._pub_seq += 1


def _malformed_dds(stamp_ns: int) -> CandidateArray:
    msg = convert.candidates_to_msg(_candidates('dds_malformed', stamp_ns))
    msg.class_ids = [0, 1]  # two class ids for one box: the arrays disagree
    return msg


def _malformed_local(stamp_ns: int) -> Envelope:
    good = _candidates('local_malformed', stamp_ns)
    payload = CandidatePayload(np.zeros((1, 3), np.float32), good.payload.scores,
                               good.payload.class_ids, NAMES, good.payload.letterbox, 640, 480,
                               'test')
    return Envelope('cam', 1, stamp_ns, 'local_malformed', (), payload)


@needs_iceoryx2
def test_every_refusal_kind_is_refused_alike_by_dds_in_process_and_shared_memory(
        composed, second_context, ros_context) -> None:
    container, nodes = composed(frames=0, names={'nms'}, overrides={'nms': {
        'transport.same_host': 'iceoryx2', 'max_candidates': MAX_CANDIDATES,
        'qos.input.reliability': 'reliable'}})
    nms = nodes['nms']
    stage_input = nms.inputs[0]
    outside = Outside(second_context, 'outside_gate')
    dds = outside.node.create_publisher(CandidateArray, 'candidates', 100)
    local_node = Node('local_gate', context=ros_context)
    ros_publisher = local_node.create_publisher(CandidateArray, 'candidates', 10)
    local = StagePublisher(LocalBus.for_context(ros_context), stage_input.topic, ros_publisher,
                           convert.candidates_to_msg, convert.envelope_key)
    shm_out = shm.ShmPublisher(stage_input.topic)
    try:
        assert outside.spin_until(lambda: dds.get_subscription_count() > 0, 15.0)
        assert wait_for(lambda: shm_out.subscribers() > 0, 15.0)
        start_ns = time.time_ns() - SEC // 2
        sends: dict[str, Callable[[Envelope], None]] = {
            'in_process': local.publish,
            'shared_memory': lambda e: shm_out.send(e) or pytest.fail(shm_out.last_error),
            'dds': lambda e: dds.publish(convert.candidates_to_msg(e)),
        }
        malformed: dict[str, Callable[[int], None]] = {
            'in_process': lambda s: local.publish(_malformed_local(s)),
            'shared_memory': lambda s: _malformed_shm(shm_out, s),
            'dds': lambda s: dds.publish(_malformed_dds(s)),
        }
        index = processed = 0
        for round_, (transport, send) in enumerate(sends.items(), 1):
            for kind, make in KINDS.items():
                index += 1
                send(make(f'{transport}_{kind}', start_ns + index * 1000))
                if kind == 'too_many' and transport == 'in_process':
                    # The node's own detector may pass more: NMS keeps the best, counted.
                    processed += 1
                    assert outside.spin_until(lambda: nms.candidates_truncated == 1, 10.0)
                    continue
                expected = round_ - (kind == 'too_many')
                assert outside.spin_until(lambda: nms.refusals[kind] == expected, 10.0), \
                    (transport, kind, nms.refusals, nms.last_error)
            index += 1
            malformed[transport](start_ns + index * 1000)
            assert outside.spin_until(lambda: nms.refusals['malformed'] == round_, 10.0), \
                (transport, nms.refusals, nms.last_error)
            assert stage_input.stats.processed == processed, \
                (transport, stage_input.stats, nms.refusals, nms.last_error)
            # A good frame still goes through this transport.
            index += 1
            send(_candidates(f'{transport}_good', start_ns + index * 1000))
            processed += 1
            assert outside.spin_until(lambda: stage_input.stats.processed == processed, 10.0)
        kinds = set(KINDS) | {'malformed'}
        counts = dict.fromkeys(kinds, 3) | {'too_many': 2}
        assert {k: nms.refusals[k] for k in kinds} == counts, nms.refusals
        assert stage_input.stats.errors == 3 * len(kinds) - 1, stage_input.stats
        values = {kv.key: kv.value for kv in nms.stage_status().values}
        assert all(values[f'refused.{k}'] == str(n) for k, n in counts.items()), values
    finally:
        shm_out.close()
        local_node.destroy_node()
        outside.close()


@needs_iceoryx2
def test_the_shared_memory_segments_of_a_service_are_only_the_users(tmp_path) -> None:
    # The binding cannot set permissions (README, Security): iceoryx2's own modes are relied on.
    before = set(os.listdir('/dev/shm'))
    publisher = shm.ShmPublisher(f'/gate_permissions_{os.getpid()}')
    try:
        created = [name for name in set(os.listdir('/dev/shm')) - before if 'iox2' in name]
        assert created
        modes = {name: stat.S_IMODE(os.stat(f'/dev/shm/{name}').st_mode) for name in created}
        assert all(mode & 0o077 == 0 for mode in modes.values()), modes
    finally:
        publisher.close()


def test_a_nan_model_makes_the_detector_error_with_the_reason_and_count(
        composed, tmp_path) -> None:
    # Issue 29: all outputs NaN left the detector OK "running" (the error had no time).
    from support.onnx_models import make_constant_output_model, write_ultralytics_metadata
    path = make_constant_output_model(tmp_path / 'nan.onnx',
                                      np.full((1, 8, 64), np.nan, np.float32), (320, 320))
    write_ultralytics_metadata(path, NAMES, (320, 320))
    container, nodes = composed(frames=0, fps=30.0, model_path=str(path))
    detector = nodes['detector']

    def status() -> Any:
        return detector.stage_status()
    assert wait_for(lambda: status().level == DiagnosticStatus.ERROR, 20.0), status()
    assert 'NaN/inf' in status().message and 'frames' in status().message
    values = {kv.key: kv.value for kv in status().values}
    assert int(values['non_finite_outputs']) >= 64 * 10


@pytest.mark.parametrize('frame_id', ['c' * 65, 'front camera'])
def test_a_camera_name_the_monitor_refuses_is_refused_at_ingest(
        composed, second_context, frame_id) -> None:
    # Issue 29: processed and commanded, while the monitor refused every trace of it.
    from edge_infer_ros.core.frame import FrameTrace
    from edge_infer_ros.monitor.config import BudgetConfig
    from edge_infer_ros.monitor.tracker import BudgetTracker
    with pytest.raises(ValueError):
        BudgetTracker(BudgetConfig()).observe(FrameTrace(frame_id, 1, 1, frame_id, (
            StageTiming('preprocess', 'n', 2, 3, 4),)), 10)
    container, nodes = composed(frames=0, names={'nms'}, overrides={'nms': {
        'qos.input.reliability': 'reliable'}})
    nms = nodes['nms']
    outside = Outside(second_context, 'outside_names')
    dds = outside.node.create_publisher(CandidateArray, 'candidates', 10)
    try:
        assert outside.spin_until(lambda: dds.get_subscription_count() > 0, 15.0)
        stamp = time.time_ns() - SEC // 100
        dds.publish(convert.candidates_to_msg(_candidates(frame_id, stamp, camera=frame_id)))
        assert outside.spin_until(lambda: nms.refusals['bad_name'] == 1, 10.0), nms.refusals
        nms.inputs[0].deliver(_candidates(frame_id, stamp + 1, camera=frame_id))
        assert nms.refusals['bad_name'] == 2 and nms.inputs[0].stats.processed == 0
    finally:
        outside.close()


def test_a_stamp_with_nanosec_of_a_second_or_more_is_refused_not_renormalised(
        composed, second_context) -> None:
    container, nodes = composed(frames=0, names={'nms'}, overrides={'nms': {
        'qos.input.reliability': 'reliable'}})
    nms = nodes['nms']
    outside = Outside(second_context, 'outside_stamps')
    dds = outside.node.create_publisher(CandidateArray, 'candidates', 10)
    try:
        assert outside.spin_until(lambda: dds.get_subscription_count() > 0, 15.0)
        msg = convert.candidates_to_msg(_candidates('cam', time.time_ns() - 2 * SEC))
        msg.header.stamp.nanosec += 1_000_000_000  # the same instant, written wrongly
        dds.publish(msg)
        assert outside.spin_until(lambda: nms.refusals['bad_stamp'] == 1, 10.0), nms.refusals
        assert nms.inputs[0].stats.processed == 0
    finally:
        outside.close()


def test_an_unknown_parameter_name_warns_with_the_name(ros_context) -> None:
    from edge_infer_ros.ros.nodes.nms import NmsNode
    from rclpy.parameter import Parameter
    node = NmsNode(context=ros_context, parameter_overrides=[
        Parameter('iou_treshold', value=0.3), Parameter('iou_threshold', value=0.4)])
    try:
        assert node.unknown_parameters() == ['iou_treshold']
        node.trigger_configure()
        status = node.stage_status()
        assert status.level == DiagnosticStatus.WARN and 'iou_treshold' in status.message
    finally:
        node.destroy_node()

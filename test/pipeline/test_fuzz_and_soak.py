"""
Fuzzing of every message decoding path, and a short soak of the composed pipeline.

Decoding must give a valid envelope or a ValueError with a reason, nothing else, whatever a
publisher sends. The soak (its long form is bench/soak.py) checks that nothing is lost from
the accounting and that memory and buffer pools stay flat.
"""

from __future__ import annotations

import gc
import time

from edge_infer_ros.core.image_encodings import image_size
from edge_infer_ros.core.validate import InputRefused, REASONS
from edge_infer_ros.ros import convert
from edge_infer_ros.stages.preprocess import Preprocessor
from edge_infer_ros_msgs.msg import (CandidateArray, Detection, DetectionArray,
                                     FrameTrace as FrameTraceMsg,
                                     StageTiming as StageTimingMsg, TensorFrame)
from hypothesis import given, HealthCheck, settings, strategies as st
import numpy as np
import psutil
import pytest
from sensor_msgs.msg import CompressedImage, Image
from support.waiting import wait_for

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
stamps = st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 999_999_999))


def _stamp(msg, stamp) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp


@FUZZ
@given(height=st.integers(0, 64), width=st.integers(0, 64), step=st.integers(0, 300),
       encoding=st.sampled_from(['bgr8', 'rgb8', 'mono8', 'rgba8', 'bgra8', '16UC1', 'x', '',
                                 'yuyv', 'yuv422', 'nv12', 'nv21', 'mono16', 'bgra16',
                                 'bayer_rggb8', 'bayer_grbg16', '32FC1']),
       bigendian=st.integers(0, 1), data=st.binary(max_size=5000), stamp=stamps)
def test_image_decoding_never_fails_otherwise(height, width, step, encoding, bigendian, data,
                                              stamp) -> None:
    msg = Image(height=height, width=width, step=step, encoding=encoding, data=data,
                is_bigendian=bigendian)
    _stamp(msg, stamp)
    try:
        envelope = convert.image_from_msg(msg, 0)
    except InputRefused as refused:
        assert refused.reason in REASONS
        return
    except ValueError:
        return
    image = envelope.payload.image
    assert image_size(image, encoding) == (width, height) and not image.flags.writeable
    tensor, _ = Preprocessor(32, 32)(image, envelope.payload.encoding)
    assert tensor.shape == (1, 3, 32, 32) and 0.0 <= tensor.min() <= tensor.max() <= 1.0


@FUZZ
@given(head=st.sampled_from([b'', b'\xff\xd8', b'\xff\xd8\xff\xc0\x00\x11\x08',
                             b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR']),
       data=st.binary(max_size=3000), stamp=stamps,
       fmt=st.sampled_from(['jpeg', 'png', 'bgr8; jpeg compressed bgr8', 'tiff', '']))
def test_compressed_decoding_never_fails_otherwise(head, data, stamp, fmt) -> None:
    msg = CompressedImage(format=fmt, data=head + data)
    _stamp(msg, stamp)
    try:
        convert.compressed_from_msg(msg, 0, (32, 32))
    except InputRefused as refused:
        assert refused.reason in REASONS
    except ValueError:
        pass


@FUZZ
@given(shape=st.lists(st.integers(0, 8), max_size=5),
       dtype=st.sampled_from(['float32', 'float16', 'uint8', 'int64', 'object', '']),
       data=st.binary(max_size=2048), special=st.sampled_from([None, np.nan, np.inf]))
def test_tensor_decoding_never_fails_otherwise(shape, dtype, data, special) -> None:
    if special is not None and dtype == 'float32' and len(data) >= 4:
        data = np.float32(special).tobytes() + data[4:]
    msg = TensorFrame(shape=shape, dtype=dtype, data=data)
    try:
        envelope = convert.tensor_from_msg(msg)
    except ValueError:
        return
    tensor = envelope.payload.tensor
    assert list(tensor.shape) == shape and tensor.dtype.name == dtype
    if tensor.dtype.kind == 'f':
        assert np.isfinite(tensor).all()


@FUZZ
@given(boxes=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=20),
       scores=st.lists(st.floats(0, 1, width=32), max_size=6),
       class_ids=st.lists(st.integers(-5, 10), max_size=6))
def test_candidate_decoding_never_fails_otherwise(boxes, scores, class_ids) -> None:
    msg = CandidateArray(boxes=boxes, scores=scores, class_ids=class_ids,
                         class_names=['a', 'b'])
    try:
        envelope = convert.candidates_from_msg(msg)
    except ValueError:
        return
    assert envelope.payload.boxes.shape == (len(scores), 4)


@FUZZ
@given(rows=st.lists(st.tuples(st.floats(-1e6, 1e6, width=32), st.floats(-1, 2, width=32),
                               st.integers(-3, 5000)), max_size=8),
       size=st.tuples(st.integers(0, 2000), st.integers(0, 2000)))
def test_detection_array_decoding_never_fails_otherwise(rows, size) -> None:
    msg = DetectionArray(image_width=size[0], image_height=size[1],
                         detections=[Detection(x_min=x, y_min=x, x_max=x + 1, y_max=x + 1,
                                               score=s, class_id=c, class_name=f'c{c}')
                                     for x, s, c in rows])
    msg.header.stamp.sec = 5
    try:
        envelope = convert.detections_from_msg(msg)
    except InputRefused as refused:
        assert refused.reason in REASONS
        return
    payload = envelope.payload
    assert len(payload) == len(rows)
    assert 1 <= payload.image_width and 1 <= payload.image_height
    assert ((payload.scores >= 0) & (payload.scores <= 1)).all()
    assert (payload.boxes[:, 2] <= payload.image_width + 1).all()
    assert ((payload.class_ids >= 0) & (payload.class_ids < len(payload.class_names) + 1)).all()


@FUZZ
@given(camera=st.text(max_size=80), stamp=st.tuples(st.integers(-2**31, 2**31 - 1),
                                                    st.integers(0, 999_999_999)),
       stages=st.lists(st.tuples(st.text(max_size=70), st.integers(-2**63, 2**63 - 1),
                                 st.integers(0, 10**9), st.integers(0, 10**9)), max_size=6))
def test_trace_decoding_never_fails_otherwise(camera, stamp, stages) -> None:
    msg = FrameTraceMsg(camera=camera, stages=[
        StageTimingMsg(stage=name, node='/n', received_ns=received, start_ns=received + wait,
                       end_ns=received + wait + service)
        for name, received, wait, service in stages if received + wait + service < 2**63])
    _stamp(msg, stamp)
    try:
        trace = convert.trace_from_msg(msg).payload
    except InputRefused as refused:
        assert refused.reason in REASONS
        return
    assert 0 < trace.stamp_ns <= time.time_ns() + 10**9
    for timing in trace.stages:
        assert 0 < timing.received_ns <= timing.start_ns <= timing.end_ns
        assert timing.received_ns >= trace.stamp_ns - 10**9


@pytest.mark.slow
def test_short_soak_keeps_accounting_exact_and_memory_flat(composed) -> None:
    frames = 450  # 15 s at 30 fps; bench/soak.py runs the long form
    container, nodes = composed(frames=frames, fps=30.0)
    process = psutil.Process()
    assert wait_for(lambda: nodes['camera'].captured >= 90, 20.0)
    gc.collect()
    rss_start = process.memory_info().rss
    pools_start = (nodes['camera']._source.pool.allocations,
                   sum(p.tensor_allocations for p in nodes['preprocess']._preprocessors.values()))
    assert nodes['camera'].wait_until_done(60.0)
    assert wait_for(lambda: all(i.idle() for n in nodes.values() for i in n.inputs), 10.0)
    time.sleep(0.3)
    gc.collect()
    rss_end = process.memory_info().rss
    pools_end = (nodes['camera']._source.pool.allocations,
                 sum(p.tensor_allocations for p in nodes['preprocess']._preprocessors.values()))
    captured = nodes['camera'].captured
    processed = nodes['action'].commands
    stages = ('preprocess', 'detector', 'nms', 'action')
    dropped = sum(i.stats.dropped for n in stages for i in nodes[n].inputs)
    errors = sum(nodes[n].error_count() for n in stages)
    assert captured == frames
    assert captured == processed + dropped + errors, (captured, processed, dropped, errors)
    assert nodes['budget_monitor'].traces_seen == processed  # every processed frame traced
    # No per-frame allocation of frames or tensors in steady state: a pool grows only while
    # more buffers are in flight than ever before (a load spike fills every queue), so its
    # growth is bounded by what the queues and the working stages can hold at once, not by
    # the 360 frames that went through.
    in_flight = sum(i.depth for n in stages for i in nodes[n].inputs) + len(stages) + 1
    for start, end in zip(pools_start, pools_end):
        assert end - start <= in_flight, (pools_start, pools_end, in_flight)
    # ... and no growth of the process beyond noise over 360 frames.
    assert rss_end - rss_start < 25 * 2**20, (rss_start, rss_end)


def test_overlap_is_counted_from_the_traces() -> None:
    from edge_infer_ros.core.frame import FrameTrace, StageTiming
    from edge_infer_ros.runs.report import overlap_stats

    def trace(seq: int, pre: tuple[int, int], det: tuple[int, int]) -> FrameTrace:
        stages = (StageTiming('preprocess', '/p', pre[0], *pre),
                  StageTiming('detector', '/d', det[0], *det))
        return FrameTrace('cam', seq, 0, 'f', stages)
    # Frame 1's preprocess starts (15) before frame 0's inference ends (30): overlap.
    # Frame 2's preprocess starts (60) after frame 1's inference ended (50): none.
    traces = [trace(0, (0, 10), (10, 30)), trace(1, (15, 25), (30, 50)),
              trace(2, (60, 70), (70, 90))]
    assert overlap_stats(traces) == {'pairs': 2, 'overlapped': 1, 'fraction': 0.5}

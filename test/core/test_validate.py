"""
Untrusted input, plain: the checks of core/validate.py, each boundary's use of them, the policy.

One test per defect found by fuzzing from outside (issue 15): each kind of bad input now gets
a refusal with a reason, and nothing non-finite or over the limits reaches a command.
"""

from __future__ import annotations

import dataclasses
import math
import time
from unittest import mock

from edge_infer_ros.core import validate
from edge_infer_ros.core.frame import Envelope, FrameTrace, StageTiming
from edge_infer_ros.core.geometry import Letterbox, unletterbox
from edge_infer_ros.core.image import read_only
from edge_infer_ros.core.payloads import (CandidatePayload, Command, DetectionPayload,
                                          ImagePayload, TensorPayload)
from edge_infer_ros.core.validate import InputRefused
from edge_infer_ros.monitor.config import BudgetConfig
from edge_infer_ros.monitor.tracker import BudgetTracker
from edge_infer_ros.ros import convert
from edge_infer_ros.stages.action import ActionPolicy, bounded_command
from edge_infer_ros.stages.nms import batched_nms
from edge_infer_ros_msgs.msg import (CandidateArray, Detection, DetectionArray, FrameTrace as
                                     FrameTraceMsg, StageTiming as StageTimingMsg, TensorFrame)
from hypothesis import event, given, HealthCheck, settings, strategies as st
import numpy as np
import pytest

NAMES = ('ball', 'box', 'cone', 'person')
POLICY = ActionPolicy()
SEC = 1_000_000_000


def _now_stamp(msg, offset_s: float = -0.01) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(
        time.time_ns() + int(offset_s * SEC), SEC)


def _candidates(boxes, scores, class_ids, scale=0.5, pad=(0.0, 40.0), size=(640, 480),
                names=NAMES) -> CandidateArray:
    msg = CandidateArray(camera='c', boxes=[float(v) for b in boxes for v in b],
                         scores=[float(s) for s in scores], class_ids=list(class_ids),
                         class_names=list(names), scale=scale, pad_x=pad[0], pad_y=pad[1],
                         image_width=size[0], image_height=size[1])
    _now_stamp(msg)
    return msg


def _detections(rows, size=(640, 480)) -> DetectionArray:
    msg = DetectionArray(camera='c', image_width=size[0], image_height=size[1], detections=[
        Detection(x_min=b[0], y_min=b[1], x_max=b[2], y_max=b[3], score=s, class_id=c,
                  class_name=NAMES[c] if 0 <= c < len(NAMES) else '') for b, s, c in rows])
    _now_stamp(msg)
    return msg


def _refused(reason: str, call, *args, **kwargs) -> InputRefused:
    with pytest.raises(InputRefused) as caught:
        call(*args, **kwargs)
    assert caught.value.reason == reason, (caught.value.reason, str(caught.value))
    return caught.value


def _within_limits(command: Command, policy: ActionPolicy = POLICY) -> bool:
    return (math.isfinite(command.linear_x) and math.isfinite(command.angular_z) and
            abs(command.linear_x) <= policy.max_linear_speed and
            abs(command.angular_z) <= policy.max_angular_speed)


# -- the defects of issue 15, one test each ----------------------------------------------------
@pytest.mark.parametrize('field, value', [('scale', math.nan), ('pad_x', math.nan),
                                          ('pad_y', math.inf), ('pad_x', -math.inf),
                                          ('scale', 0.0), ('scale', -1.0)])
def test_nan_or_infinite_letterbox_is_refused_in_tensors_and_candidates(field, value) -> None:
    candidates = _candidates([(150, 150, 170, 170)], [0.9], [0])
    setattr(candidates, field, value)
    _refused('bad_letterbox', convert.candidates_from_msg, candidates)
    tensor = TensorFrame(shape=[1, 3, 2, 2], dtype='float32', data=bytes(48), scale=0.5,
                         image_width=4, image_height=4)
    _now_stamp(tensor)
    setattr(tensor, field, value)
    _refused('bad_letterbox', convert.tensor_from_msg, tensor)
    # ... and in-process, where nobody converted: unletterbox refuses a NaN scale too.
    with pytest.raises(ValueError, match='finite'):
        unletterbox(np.zeros((1, 4), np.float32), Letterbox(math.nan, 0.0, 0.0), 640, 480)


def test_nan_box_in_a_detection_array_is_refused() -> None:
    _refused('non_finite', convert.detections_from_msg,
             _detections([((math.nan, 10, 20, 30), 0.9, 0)]))


def test_inverted_candidate_box_is_refused_and_an_inverted_detection_cannot_speed_up() -> None:
    # The fuzzer's candidate [165, 275, 155, 45] gave linear.x 1.565 with a 0.5 limit.
    _refused('inverted_box', convert.candidates_from_msg,
             _candidates([(165, 275, 155, 45)], [0.9], [0]))
    _refused('inverted_box', convert.detections_from_msg,
             _detections([((320, 479, 320, 0), 0.9, 0)]))
    # In-process [320, 479, 320, 0] gave 1.609: the policy ignores and counts it now.
    payload = DetectionPayload(np.array([[320, 479, 320, 0]], np.float32),
                               np.array([0.9], np.float32), np.array([0], np.int32), NAMES,
                               640, 480)
    command = POLICY.decide(payload)
    assert _within_limits(command) and command.ignored == 1
    assert (command.linear_x, command.angular_z) == (0.0, 0.0)


def test_the_policy_judges_rows_unless_their_maker_checked_them() -> None:
    # Rows said checked (NMS in this process) are taken on their maker's word only while they
    # cannot have changed since; the command stays within the limits either way.
    arrays = (np.array([[320, 479, 320, 0]], np.float32), np.array([0.9], np.float32),
              np.array([0], np.int32))
    said = DetectionPayload(*arrays, NAMES, 640, 480, rows_checked=True)
    command = POLICY.decide(said)
    assert command.ignored == 1 and _within_limits(command)
    for array in arrays:
        read_only(array)
    command = POLICY.decide(said)
    assert command.ignored == 0 and _within_limits(command)
    unsaid = POLICY.decide(dataclasses.replace(said, rows_checked=False))
    assert unsaid.ignored == 1


@pytest.mark.parametrize('score', [1.5, -0.1])
def test_scores_outside_0_1_are_refused(score) -> None:
    _refused('score_out_of_range', convert.candidates_from_msg,
             _candidates([(10, 10, 20, 20)], [score], [0]))
    _refused('score_out_of_range', convert.detections_from_msg,
             _detections([((10, 10, 20, 20), score, 0)]))


@pytest.mark.parametrize('class_id', [-5, 2**31 - 1, len(NAMES)])
def test_class_ids_out_of_range_are_refused(class_id) -> None:
    _refused('class_id_out_of_range', convert.candidates_from_msg,
             _candidates([(10, 10, 20, 20)], [0.9], [class_id]))
    if class_id != len(NAMES):  # a DetectionArray does not carry the class count
        _refused('class_id_out_of_range', convert.detections_from_msg,
                 _detections([((10, 10, 20, 20), 0.9, class_id)]))


#: Coordinates near every bound check_boxes has, and anything a float32 can hold.
_COORDS = st.one_of(st.sampled_from([-1e7, -1.5, -1.0, 0.0, 10.0, 479.0, 481.0, 640.0, 641.0,
                                     641.5, 1e6, 2e6]),
                    st.floats(width=32, allow_nan=True, allow_infinity=True))


@given(rows=st.lists(st.tuples(_COORDS, _COORDS, _COORDS, _COORDS,
                               st.one_of(st.floats(-0.5, 1.5, width=32), st.just(math.nan)),
                               st.integers(-2, len(NAMES) + 1)),
                     min_size=1, max_size=validate.SCALAR_BOX_ROWS),
       image=st.booleans())
@settings(max_examples=300, deadline=None)
def test_few_boxes_checked_row_by_row_are_judged_as_numpy_judges_them(rows, image) -> None:
    boxes = np.array([row[:4] for row in rows], np.float32)
    scores = np.array([row[4] for row in rows], np.float32)
    class_ids = np.array([row[5] for row in rows], np.int32)
    size = (640, 480) if image else None

    def verdict(scalar_rows: int):
        with mock.patch.object(validate, 'SCALAR_BOX_ROWS', scalar_rows):
            try:
                validate.check_boxes(boxes, scores, class_ids, len(NAMES), 'candidates', size)
            except InputRefused as refusal:
                return refusal.reason, str(refusal)
        return None
    row_by_row = verdict(validate.SCALAR_BOX_ROWS)
    assert row_by_row == verdict(0)  # 0: numpy alone, as before
    # What is accepted, the rows accepted alone (numpy only ever runs to say why not).
    assert validate._rows_ok(boxes, scores, class_ids, len(NAMES), size) == (row_by_row is None)
    event('refused' if row_by_row else 'accepted')


_NOW = 1_800_000_000 * SEC
#: Values at each bound of the gate, each list led by good values so that a third of the
#: envelopes pass and the rest fail one rule or a few.
_TIMES = st.sampled_from([_NOW - 10, _NOW - 2, _NOW - 1, _NOW] * 24 +
                         [-5, 0, 1, _NOW - 3 * SEC, _NOW - 2 * SEC, _NOW - SEC, _NOW + SEC,
                          _NOW + SEC + 1, _NOW + 2 * SEC])
_NAMES = st.sampled_from(['camera', 'detector', 'front/left:0'] * 40 +
                         ['a camera', '9nms', '', 'x' * 65, 'y' * 300])
_SIZES = st.sampled_from([480, 640] * 6 +
                         [0, 1, validate.MAX_IMAGE_SIDE, validate.MAX_IMAGE_SIDE + 1])
_FLOATS = st.sampled_from([0.5, 2.0] * 8 +
                          [math.nan, math.inf, -math.inf, -1.0, 0.0, validate.MAX_PAD,
                           validate.MAX_PAD + 1, -validate.MAX_PAD - 1])


@st.composite
def _timing(draw):
    """Draw a stage's times, in order unless drawn otherwise."""
    times = [draw(_TIMES) for _ in range(3)]
    return StageTiming(draw(_NAMES), draw(_NAMES),
                       *(sorted(times) if draw(st.integers(0, 3)) else times))


@st.composite
def _envelopes(draw):
    """Draw an envelope of any payload kind, each field near a bound of the gate."""
    trace = tuple(draw(_timing()) for _ in range(draw(st.integers(0, 2))))
    width, height = draw(_SIZES), draw(_SIZES)
    box = Letterbox(draw(_FLOATS), draw(_FLOATS), draw(_FLOATS))
    kind = draw(st.sampled_from(['image', 'tensor', 'candidates', 'detections', 'command']))
    rows = draw(st.lists(st.tuples(*[_COORDS] * 4, st.sampled_from([0.5, 1.5, -0.1, math.nan]),
                                   st.integers(-1, len(NAMES))), max_size=40))
    if draw(st.integers(0, 2)):  # most frames: only a few rows, if any, break a rule
        rows = [row if draw(st.integers(0, 15)) == 0 else
                (10.0, 10.0, 20.0 + index, 300.0, 0.5, index % len(NAMES))
                for index, row in enumerate(rows)]
    boxes = np.array([r[:4] for r in rows], np.float32).reshape(-1, 4)
    scores = np.array([r[4] for r in rows], np.float32)
    ids = np.array([r[5] for r in rows], np.int32)
    names = NAMES + ('n' * draw(st.sampled_from([1] * 7 + [validate.MAX_CLASS_NAME + 1])),)
    payload = {'image': lambda: ImagePayload(np.zeros((min(height, 2), min(width, 2), 3)
                                                      if width and height else (0, 0, 3),
                                                      np.uint8), 'bgr8'),
               'tensor': lambda: TensorPayload(np.full((1, 3, 2, 2), draw(_FLOATS), np.float32),
                                               box, width, height),
               'candidates': lambda: CandidatePayload(boxes, scores, ids, names, box, width,
                                                      height, 'onnxruntime'),
               'detections': lambda: DetectionPayload(boxes, scores, ids, names, width, height),
               'command': lambda: Command(0.0, 0.0, True, '')}[kind]()
    return Envelope(draw(_NAMES), 1, draw(_TIMES), draw(_NAMES), trace, payload)


@given(envelope=_envelopes(), local=st.booleans())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_one_pass_gate_accepts_exactly_what_the_checks_one_by_one_accept(
        envelope, local) -> None:
    def refusal():
        try:
            validate.check_envelope(envelope, _NOW, 30, scan_tensor=not local)
        except InputRefused as refused:
            return refused.reason
        return None
    with mock.patch.object(validate, '_envelope_ok', lambda *_: False):
        one_by_one = refusal()
    assert refusal() == one_by_one
    # What passes, the one pass accepts alone (the checks one by one run only to say why).
    assert validate._envelope_ok(envelope, _NOW, 30, not local) == (one_by_one is None)
    event(f'{type(envelope.payload).__name__}: {one_by_one or "accepted"}')


def _one_row(box=(10.0, 10.0, 20.0, 30.0), score=0.5, class_id=1, rows=1):
    return {'boxes': np.tile(np.array([box], np.float32), (rows, 1)),
            'scores': np.full(rows, score, np.float32),
            'class_ids': np.full(rows, class_id, np.int32)}


@pytest.mark.parametrize('reason, change', [
    ('inverted_box', _one_row(box=(20.0, 10.0, 10.0, 30.0))),
    ('score_out_of_range', _one_row(score=1.5)),
    ('class_id_out_of_range', _one_row(class_id=len(NAMES))),
    ('too_many', _one_row(rows=31)),
    ('bad_name', {'class_names': NAMES + ('n' * (validate.MAX_CLASS_NAME + 1),)}),
    ('malformed', {'class_ids': np.zeros(2, np.int32)}),
    (None, _one_row(rows=validate.SCALAR_BOX_ROWS + 1)),  # numpy judges; max_count raised
])
def test_each_rule_on_candidates_is_applied_by_both_ways_of_the_gate(reason, change) -> None:
    good = CandidatePayload(**_one_row(), class_names=NAMES, letterbox=Letterbox(0.5, 0.0, 0.0),
                            image_width=640, image_height=480, backend='onnxruntime')
    envelope = Envelope('camera', 1, _NOW - 10, 'camera', (), dataclasses.replace(good, **change))
    limit = 30 if reason else validate.SCALAR_BOX_ROWS + 1
    one_pass = reason is None and len(envelope.payload.scores) <= validate.SCALAR_BOX_ROWS
    assert validate._envelope_ok(envelope, _NOW, limit, True) is one_pass
    if reason is None:
        validate.check_envelope(envelope, _NOW, limit)
    else:
        _refused(reason, validate.check_envelope, envelope, _NOW, limit)


@pytest.mark.parametrize('kind', ['candidates', 'detections'])
def test_rows_their_maker_checked_are_trusted_only_while_they_cannot_change(kind) -> None:
    # A broken row that the payload says was checked: the gate takes the maker's word only
    # when the arrays are read-only (nothing changed them since); otherwise it judges them.
    rows = _one_row(box=(20.0, 10.0, 10.0, 30.0))
    common = dict(rows, class_names=NAMES, image_width=640, image_height=480)
    payload = CandidatePayload(**common, letterbox=Letterbox(0.5, 0.0, 0.0),
                               backend='onnxruntime') if kind == 'candidates' else \
        DetectionPayload(**common)
    envelope = Envelope('camera', 1, _NOW - 10, 'camera', (), payload)
    _refused('inverted_box', validate.check_envelope, envelope, _NOW)
    trusted = dataclasses.replace(envelope, payload=dataclasses.replace(payload,
                                                                        rows_checked=True))
    _refused('inverted_box', validate.check_envelope, trusted, _NOW)
    for array in rows.values():
        read_only(array)
    validate.check_envelope(trusted, _NOW)
    _refused('inverted_box', validate.check_envelope, envelope, _NOW)  # not said checked


def test_name_checks_remember_a_bounded_number_of_short_names_and_still_refuse() -> None:
    for index in range(1000):
        validate.check_name(f'camera_{index}', 'camera name')
    assert validate._matches.cache_info().currsize <= 256
    validate._matches.cache_clear()
    for _ in range(2):  # a refusal is remembered as one too
        _refused('bad_name', validate.check_name, 'a camera', 'camera name')
        _refused('bad_name', validate.check_name, 'x' * 300, 'camera name')
    assert validate._matches.cache_info().currsize == 1  # a name too long is not kept


@pytest.mark.parametrize('size', [(0, 0), (640, 0), (0, 480), (10**6, 480)])
def test_zero_or_absurd_image_sizes_are_refused(size) -> None:
    _refused('bad_image_size', convert.candidates_from_msg,
             _candidates([(10, 10, 20, 20)], [0.9], [0], size=size))
    _refused('bad_image_size', convert.detections_from_msg, _detections([], size=size))
    policy_command = POLICY.decide(DetectionPayload(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), NAMES,
        *size))
    assert policy_command.stop and _within_limits(policy_command)


def test_boxes_outside_the_image_are_refused() -> None:
    _refused('box_outside_image', convert.detections_from_msg,
             _detections([((10, 10, 700, 20), 0.9, 0)]))


@pytest.mark.parametrize('offset_s, reason', [(60.0, 'future_stamp'), (None, 'zero_stamp')])
def test_future_and_zero_stamps_are_refused_on_every_input(offset_s, reason) -> None:
    for msg, from_msg in ((_candidates([], [], []), convert.candidates_from_msg),
                          (_detections([]), convert.detections_from_msg),
                          (FrameTraceMsg(camera='c'), convert.trace_from_msg)):
        if offset_s is None:
            msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
        else:
            _now_stamp(msg, offset_s)
        _refused(reason, from_msg, msg)


def test_negative_stamp_is_refused() -> None:
    msg = FrameTraceMsg(camera='c')
    msg.header.stamp.sec = -5
    _refused('negative_stamp', convert.trace_from_msg, msg)


def test_traces_with_zero_or_disordered_times_are_refused() -> None:
    now = time.time_ns()
    for times in ((0, 0, 0), (now, now - 10, now), (now - 60 * SEC, now, now)):
        msg = FrameTraceMsg(camera='c', stages=[StageTimingMsg(
            stage='nms', node='/nms', received_ns=times[0], start_ns=times[1],
            end_ns=times[2])])
        _now_stamp(msg)
        _refused('bad_trace', convert.trace_from_msg, msg)


def test_nan_candidates_are_refused_with_a_count_not_dropped_silently() -> None:
    error = _refused('non_finite', convert.candidates_from_msg,
                     _candidates([(10, 10, 20, 20), (math.nan, 1, 2, 3)], [0.9, 0.8], [0, 1]))
    assert '1 of 2 candidates' in str(error)


def test_an_outside_candidate_count_above_max_candidates_is_refused_by_its_length() -> None:
    count = 1_000_000
    msg = CandidateArray(boxes=np.zeros(count * 4, np.float32).tolist(),
                         scores=np.zeros(count, np.float32).tolist(),
                         class_ids=np.zeros(count, np.int32).tolist(), class_names=['a'],
                         scale=1.0, image_width=10, image_height=10)
    _now_stamp(msg)
    error = _refused('too_many', convert.candidates_from_msg, msg, 1000)
    assert '1000000 candidates' in str(error)


def test_oversized_detection_arrays_and_names_are_refused() -> None:
    rows = [((1, 1, 2, 2), 0.5, 0)] * (validate.MAX_DETECTIONS + 1)
    _refused('too_many', convert.detections_from_msg, _detections(rows))
    msg = FrameTraceMsg(camera='x' * 300)
    _now_stamp(msg)
    _refused('bad_name', convert.trace_from_msg, msg)


def test_a_valid_message_passes_every_check() -> None:
    envelope = convert.candidates_from_msg(_candidates([(150, 150, 170, 170)], [0.9], [0]))
    assert envelope.payload.boxes.shape == (1, 4)
    envelope = convert.detections_from_msg(_detections([((10, 10, 20, 20), 0.9, 3)]))
    assert envelope.payload.class_names[3] == 'person'
    assert not envelope.payload.class_names_complete


# -- the command, whatever comes in -----------------------------------------------------------
def test_bounded_command_clamps_and_stops_on_non_finite() -> None:
    clamped = bounded_command(Command(5.0, -7.0, False, 'x'), 0.5, 1.0)
    assert (clamped.linear_x, clamped.angular_z) == (0.5, -1.0)
    stop = bounded_command(Command(math.nan, 0.1, False, 'x'), 0.5, 1.0)
    assert stop.stop and (stop.linear_x, stop.angular_z) == (0.0, 0.0)
    assert bounded_command(Command(0.1, 0.1, False, 'x'), math.nan, 1.0).linear_x == 0.0


# Mostly plausible values, often wild ones: both the accepted and the refused paths run.
wild = st.floats(allow_nan=True, allow_infinity=True, width=32)
floats = st.one_of(st.floats(-10, 700, width=32), wild)
unit = st.one_of(st.floats(0, 1, width=32), wild)
ids = st.one_of(st.integers(0, 3), st.integers(-2**31, 2**31 - 1))
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(rows=st.lists(st.tuples(st.tuples(floats, floats, floats, floats), unit, ids),
                     max_size=6),
       width=st.integers(-5, 5000), height=st.integers(-5, 5000),
       gain=st.floats(0, 100), near=st.floats(0.01, 1.0))
def test_any_in_process_payload_gives_a_finite_command_within_limits(
        rows, width, height, gain, near) -> None:
    policy = ActionPolicy(steering_gain=gain, near_field_fraction=near)
    payload = DetectionPayload(np.array([r[0] for r in rows], np.float32).reshape(-1, 4),
                               np.array([r[1] for r in rows], np.float32),
                               np.array([r[2] for r in rows], np.int64), NAMES, width, height)
    command = policy.decide(payload)
    assert _within_limits(command, policy), command
    assert command.stop or command.linear_x >= 0.0


@PROPERTY
@given(boxes=st.lists(floats, max_size=24), scores=st.lists(unit, max_size=6),
       class_ids=st.lists(ids, max_size=6),
       letterbox=st.tuples(st.one_of(st.floats(0.1, 2.0), wild), floats, floats),
       size=st.tuples(st.integers(0, 4000), st.integers(0, 4000)))
def test_any_candidate_array_gives_a_finite_command_within_limits(boxes, scores, class_ids,
                                                                  letterbox, size) -> None:
    """Run a CandidateArray, refused or through NMS as the node does, into the policy."""
    count = min(len(scores), len(class_ids), len(boxes) // 4)
    msg = CandidateArray(boxes=boxes[:count * 4], scores=scores[:count],
                         class_ids=class_ids[:count], class_names=list(NAMES),
                         scale=letterbox[0], pad_x=letterbox[1], pad_y=letterbox[2],
                         image_width=size[0], image_height=size[1])
    _now_stamp(msg)
    try:
        c = convert.candidates_from_msg(msg).payload
    except InputRefused as refused:
        assert refused.reason in validate.REASONS
        event(f'refused: {refused.reason}')
        return
    event('accepted')
    keep = batched_nms(c.boxes, c.scores, c.class_ids, 0.5, 100)
    mapped = unletterbox(c.boxes[keep], c.letterbox, c.image_width, c.image_height)
    command = POLICY.decide(DetectionPayload(mapped, c.scores[keep], c.class_ids[keep],
                                             c.class_names, c.image_width, c.image_height))
    assert _within_limits(command), command


@PROPERTY
@given(rows=st.lists(st.tuples(st.tuples(floats, floats, floats, floats), unit, ids),
                     max_size=6),
       size=st.tuples(st.integers(0, 4000), st.integers(0, 4000)))
def test_any_detection_array_gives_a_finite_command_within_limits(rows, size) -> None:
    msg = DetectionArray(image_width=size[0], image_height=size[1], detections=[
        Detection(x_min=b[0], y_min=b[1], x_max=b[2], y_max=b[3], score=s, class_id=c,
                  class_name='ball') for b, s, c in rows])
    _now_stamp(msg)
    try:
        payload = convert.detections_from_msg(msg).payload
    except InputRefused as refused:
        assert refused.reason in validate.REASONS
        event(f'refused: {refused.reason}')
        return
    event('accepted')
    assert _within_limits(POLICY.decide(payload))


# -- the budget monitor's state ------------------------------------------------------------------
def _trace(camera: str, stage: str = 'nms', at_ns: int = 10 * SEC) -> FrameTrace:
    return FrameTrace(camera, 0, at_ns - 5_000_000, 'f',
                      (StageTiming(stage, '/n', at_ns - 4_000_000, at_ns - 3_000_000,
                                   at_ns - 1_000_000),))


def test_tracker_refuses_cameras_beyond_max_cameras_while_they_are_live() -> None:
    tracker = BudgetTracker(BudgetConfig(max_cameras=3, max_stages=2))
    for index in range(3):
        tracker.observe(_trace(f'cam{index}'), 10 * SEC)
    error = _refused('too_many', tracker.observe, _trace('cam3'), 10 * SEC)
    assert 'max_cameras is 3' in str(error) and tracker.cameras() == ['cam0', 'cam1', 'cam2']
    # A camera silent for stale_timeout_s (1 s) makes room; live ones are never pushed out.
    tracker.observe(_trace('cam1', at_ns=11 * SEC), 11 * SEC)
    tracker.observe(_trace('cam2', at_ns=11 * SEC), 11 * SEC)
    tracker.observe(_trace('cam3', at_ns=12 * SEC), 12 * SEC)
    assert tracker.cameras() == ['cam1', 'cam2', 'cam3']
    stages = tuple(StageTiming(name, '/n', 12 * SEC - 4_000_000, 12 * SEC - 3_000_000,
                               12 * SEC - 1_000_000) for name in ('a', 'b', 'c'))
    error = _refused('too_many', tracker.observe,
                     FrameTrace('cam1', 1, 12 * SEC - 9_000_000, 'f', stages), 12 * SEC)
    assert 'max_stages is 2' in str(error)


@pytest.mark.parametrize('camera, stage', [('bad name', 'nms'), ('x' * 65, 'nms'),
                                           ('cam', 'budget_ms.x'), ('cam', ''),
                                           ('cam', 'a' * 65), ('', 'nms')])
def test_tracker_refuses_invalid_names(camera, stage) -> None:
    tracker = BudgetTracker()
    _refused('bad_name', tracker.observe, _trace(camera, stage), 10 * SEC)
    assert tracker.cameras() == []


def test_tracker_forgets_entries_after_entry_timeout() -> None:
    tracker = BudgetTracker(BudgetConfig(entry_timeout_s=5.0))
    tracker.observe(_trace('old'), 10 * SEC)
    tracker.observe(_trace('live', at_ns=14 * SEC), 14 * SEC)
    assert len(tracker.statuses(14 * SEC)) == 8  # per camera: nms, ingest, transport, e2e
    assert tracker.cameras() == ['old', 'live']
    assert tracker.expire(16 * SEC) == 1 and tracker.cameras() == ['live']


def test_tracker_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match='max_cameras'):
        BudgetConfig(max_cameras=0).validate()
    with pytest.raises(ValueError, match='entry_timeout_s'):
        BudgetConfig(entry_timeout_s=0.5, stale_timeout_s=1.0).validate()
    with pytest.raises(ValueError, match='hardware_id'):
        BudgetConfig(hardware_id='x' * 100_000).validate()


def test_absurd_boxes_and_long_class_names_are_refused_not_clipped_or_cut() -> None:
    # Issue 29: a +-1e30 candidate was clipped to the whole image; 100 kB names went through.
    msg = _candidates([[-1e30, 10, 1e30, 50]], [0.9], [0])
    _now_stamp(msg)
    with pytest.raises(InputRefused) as refused:
        convert.candidates_from_msg(msg)
    assert refused.value.reason == 'box_outside_image'
    msg = _candidates([[10, 10, 50, 50]], [0.9], [0], names=('ball', 'x' * 100_000))
    _now_stamp(msg)
    with pytest.raises(InputRefused) as refused:
        convert.candidates_from_msg(msg)
    assert refused.value.reason == 'bad_name'
    detections = DetectionArray(image_width=640, image_height=480, detections=[Detection(
        x_min=1.0, y_min=1.0, x_max=5.0, y_max=5.0, score=0.5, class_id=0,
        class_name='y' * 100_000)])
    _now_stamp(detections)
    with pytest.raises(InputRefused) as refused:
        convert.detections_from_msg(detections)
    assert refused.value.reason == 'bad_name'

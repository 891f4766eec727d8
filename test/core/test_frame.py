"""The frame's identity and trace: envelopes, the walk over a trace's hops, the profile."""

from edge_infer_ros.core.frame import Envelope, FrameTrace, hops, StageTiming
from edge_infer_ros.monitor.perfetto import chrome_trace

MS = 1_000_000
#: Captured at 0; preprocess receives at 2 ms (ingest), works 1-3; detector receives at 3.5.
TRACE = FrameTrace('front', 7, 0, 'front_optical', (
    StageTiming('preprocess', '/preprocess', 2 * MS, 1 * MS + 2 * MS, 3 * MS),
    StageTiming('detector', '/detector', round(3.5 * MS), 4 * MS, 9 * MS)))


def test_hops_are_ingest_then_transports() -> None:
    walked = [(timing.stage, hop) for timing, hop in hops(TRACE.stamp_ns, TRACE.stages)]
    assert walked == [('preprocess', 2 * MS), ('detector', round(0.5 * MS))]
    assert list(hops(5, ())) == []


def test_profile_shows_each_hop_queue_and_stage_where_it_happened() -> None:
    events = {(e['name'], e.get('cat')): e for e in chrome_trace([TRACE])['traceEvents']
              if e['ph'] == 'X'}
    assert events[('ingest', 'transport')]['ts'] == 0.0
    assert events[('ingest', 'transport')]['dur'] == 2000.0
    assert events[('transport', 'transport')]['ts'] == 3000.0
    assert events[('transport', 'transport')]['dur'] == 500.0
    assert events[('detector queue', 'queue')]['dur'] == 500.0
    assert events[('detector', 'stage')]['dur'] == 5000.0
    assert events[('frame 7', 'frame')]['dur'] == 9000.0


def test_with_payload_keeps_the_frame_and_drops_the_trace() -> None:
    envelope = Envelope('front', 7, 123, 'front_optical', TRACE.stages, 'image')
    command = envelope.with_payload('stop')
    assert (command.camera, command.seq, command.stamp_ns, command.frame_id) == \
        ('front', 7, 123, 'front_optical')
    assert command.trace == () and command.payload == 'stop'
    assert envelope.with_payload('image', camera='rear').camera == 'rear'
    assert FrameTrace.of(envelope.forward('tensor', TRACE.stages[0])).stages[-1] == \
        TRACE.stages[0]

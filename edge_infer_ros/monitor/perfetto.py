"""
Frame traces as a Chrome trace / Perfetto JSON file: one slice per stage per frame.

Open the file in https://ui.perfetto.dev or chrome://tracing. Each stage is a track; a frame's
queue wait is its own slice ("<stage> queue") just before the stage's work, and the hop from
the previous stage (or from capture) is a "transport" slice, so waiting is as visible as work.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from edge_infer_ros.core.frame import FrameTrace, hops


def chrome_trace(traces: Iterable[FrameTrace]) -> dict[str, Any]:
    """Build the trace-event document (timestamps in microseconds of ROS time)."""
    events: list[dict[str, Any]] = []
    tracks: dict[str, int] = {}

    def track(name: str) -> int:
        if name not in tracks:
            tracks[name] = len(tracks) + 1
            events.append({'name': 'thread_name', 'ph': 'M', 'pid': 1, 'tid': tracks[name],
                           'args': {'name': name}})
        return tracks[name]

    for trace in traces:
        args = {'camera': trace.camera, 'seq': trace.seq}
        for index, (timing, hop) in enumerate(hops(trace.stamp_ns, trace.stages)):
            tid = track(timing.stage)
            if hop > 0:
                events.append({'name': 'transport' if index else 'ingest', 'cat': 'transport',
                               'ph': 'X', 'pid': 1, 'tid': track('transport'),
                               'ts': (timing.received_ns - hop) / 1e3, 'dur': hop / 1e3,
                               'args': {**args, 'to': timing.stage}})
            if timing.queue_wait_ns > 0:
                events.append({'name': f'{timing.stage} queue', 'cat': 'queue', 'ph': 'X',
                               'pid': 1, 'tid': tid, 'ts': timing.received_ns / 1e3,
                               'dur': timing.queue_wait_ns / 1e3, 'args': args})
            events.append({'name': timing.stage, 'cat': 'stage', 'ph': 'X', 'pid': 1,
                           'tid': tid, 'ts': timing.start_ns / 1e3,
                           'dur': timing.service_ns / 1e3, 'args': {**args, 'node': timing.node}})
        events.append({'name': f'frame {trace.seq}', 'cat': 'frame', 'ph': 'X', 'pid': 1,
                       'tid': track(f'end_to_end {trace.camera}'), 'ts': trace.stamp_ns / 1e3,
                       'dur': trace.end_to_end_ns / 1e3, 'args': args})
    return {'traceEvents': events, 'displayTimeUnit': 'ms'}


def write_chrome_trace(path: str, traces: Iterable[FrameTrace]) -> int:
    """Write the JSON file; return the number of events."""
    document = chrome_trace(traces)
    with open(path, 'w', encoding='utf-8') as stream:
        json.dump(document, stream)
    return len(document['traceEvents'])

"""Frame traces with known timings, and a helper that feeds them to a BudgetTracker."""

from edge_infer_ros.core.frame import FrameTrace, StageTiming

MS = 1_000_000
SEC = 1_000_000_000

#: (stage, queue wait ms, service ms) of a healthy frame: 19.5 ms end to end
#: with ingest 2 ms and 0.5 ms hops.
HEALTHY = (('preprocess', 0.2, 2.0), ('detector', 0.5, 10.0), ('nms', 0.2, 2.0),
           ('action', 0.1, 1.0))
HEALTHY_MS = 19.5


def make_trace(seq=0, stamp_ns=0, camera='cam0', ingest_ms=2.0, hop_ms=0.5, stages=HEALTHY,
               **changes):
    """Build a trace with known timings; ``detector=(wait, service)`` overrides one stage."""
    t = stamp_ns + round(ingest_ms * MS)
    timings = []
    for index, (name, wait_ms, service_ms) in enumerate(stages):
        wait_ms, service_ms = changes.get(name, (wait_ms, service_ms))
        if index:
            t += round(hop_ms * MS)
        start = t + round(wait_ms * MS)
        end = start + round(service_ms * MS)
        timings.append(StageTiming(name, f'{name}_node', t, start, end))
        t = end
    return FrameTrace(camera, seq, stamp_ns, f'{camera}_optical', tuple(timings))


def feed(tracker, count, start_s=0.0, period_ms=33.0, camera='cam0', late_every=0,
         late_detector=(0.5, 40.0), **changes):
    """
    Observe ``count`` frames, each received at the end of its last stage.

    Every ``late_every``-th frame gets ``late_detector`` (a deadline miss).
    Returns the misses and the time of the last receipt.
    """
    misses = []
    now = 0
    for i in range(count):
        stamp = round(start_s * SEC) + round(i * period_ms * MS)
        extra = dict(changes)
        if late_every and i % late_every == 0:
            extra['detector'] = late_detector
        frame = make_trace(i, stamp, camera, **extra)
        now = frame.stages[-1].end_ns
        miss = tracker.observe(frame, now)
        if miss is not None:
            misses.append(miss)
    return misses, now

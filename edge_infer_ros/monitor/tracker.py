"""
The budget tracker: sliding windows per camera and stage, deadline misses, verdicts.

One class over 400 lines, on purpose: the windows it keeps, the bounds on them and the verdicts
it draws from them change together.

Why a plain module: the budget monitor node, the main job's latency report and
the tests all need the same verdicts, and none of that needs ROS.  The node
only converts: it calls ``BudgetTracker.observe`` for every ``FrameTrace``
(publishing the returned ``DeadlineMiss`` at once), turns ``statuses()`` into
``diagnostic_msgs/DiagnosticStatus`` at the diagnostics rate, and builds its
parameters from ``BudgetConfig.to_mapping()``.

Timing model (see ``edge_infer_ros.core.frame``), per frame and camera::

    stamp --ingest--> [queue_wait | service] stage 1 --hop--> [queue_wait | service] stage 2 ...

* a stage's *total* is ``queue_wait + service`` and is what its budget covers;
* *ingest* is capture stamp -> receipt by the first stage;
* *transport* is the sum of the hops between stages after ingest;
* *end to end* is capture stamp -> end of the last stage, so it is exactly
  ``ingest + sum(stage totals) + transport``, and the deadline is split into
  ``sum(stage budgets) + ingest + transport + slack``.

All latencies are in milliseconds; all times are int nanoseconds.
"""

from __future__ import annotations

import collections
import ctypes
import math
from typing import Any, Optional, Union

from edge_infer_ros.core import frame
from edge_infer_ros.core.frame import FrameTrace, hops
from edge_infer_ros.core.health import Level
from edge_infer_ros.core.validate import CAMERA_NAME_RE, check_name, InputRefused, STAGE_NAME_RE
from edge_infer_ros.monitor.config import BudgetConfig, END_TO_END, INGEST, own_copy, TRANSPORT
from edge_infer_ros.monitor.verdicts import (budget_ladder, cause_of, DeadlineMiss,
                                             EndToEndVerdict, fmt_ms, PathVerdict,
                                             percentile_key, QUEUE_WAIT, SERVICE, StageStatus,
                                             StageVerdict, Verdict, worst_item)
from edge_infer_ros.monitor.windows import SlidingWindow


def release_free_memory() -> None:
    """
    Give memory freed by shrunk windows back to the system (glibc keeps it otherwise).

    After large frees glibc raises its mmap threshold, so big windows come from the heap and
    stay in the process's RSS once freed; malloc_trim returns them. Elsewhere: nothing.
    """
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL('libc.so.6')
            _LIBC.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: Any = None


class _StageState:
    """The windows of one (camera, stage)."""

    __slots__ = ('service', 'queue_wait', 'total', 'transport', 'last_ns')

    def __init__(self, size: int, max_age_s: Optional[float], now_ns: int) -> None:
        self.service = SlidingWindow(size, max_age_s)
        self.queue_wait = SlidingWindow(size, max_age_s)
        self.total = SlidingWindow(size, max_age_s)
        self.transport = SlidingWindow(size, max_age_s)
        self.last_ns = now_ns

    def windows(self) -> tuple[SlidingWindow, ...]:
        return (self.service, self.queue_wait, self.total, self.transport)


class _CameraState:
    """The windows and counters of one camera."""

    __slots__ = ('stages', 'ingest', 'transport', 'end_to_end', 'last_ns', 'frames',
                 'misses', 'blamed', 'recent_misses')

    def __init__(self, size: int, max_age_s: Optional[float], now_ns: int) -> None:
        self.stages: dict[str, _StageState] = {}
        self.ingest = SlidingWindow(size, max_age_s)
        self.transport = SlidingWindow(size, max_age_s)
        self.end_to_end = SlidingWindow(size, max_age_s)
        self.last_ns = now_ns
        self.frames = 0
        self.misses = 0
        #: Cumulative count of deadline misses blamed on each item.
        self.blamed: collections.Counter[str] = collections.Counter()
        #: (time, worst item) of the latest misses, to name the worst in the window.
        self.recent_misses: collections.deque[tuple[int, str]] = collections.deque(maxlen=size)

    def windows(self) -> tuple[SlidingWindow, ...]:
        result = [self.ingest, self.transport, self.end_to_end]
        for state in self.stages.values():
            result.extend(state.windows())
        return tuple(result)


class BudgetTracker:
    """
    Keeps the latency windows of every (camera, stage) and judges them.

    ``observe`` is called for every trace (cheap: a few ring-buffer writes per
    stage); ``statuses`` and ``summary`` compute percentiles and are meant for
    the diagnostics rate.  Times default to ``edge_infer_ros.core.frame.now_ns()``.
    Not thread-safe: call it from one thread (one callback group).
    """

    def __init__(self, config: Optional[BudgetConfig] = None) -> None:
        """Start with no cameras; ``config`` defaults to ``BudgetConfig()``."""
        self._config = own_copy(BudgetConfig() if config is None else config.validate())
        self._per_camera: dict[str, BudgetConfig] = {}
        self._cameras: dict[str, _CameraState] = {}
        #: Clock jumps the windows were restarted for (clock_jumped).
        self.clock_jumps = 0

    @property
    def config(self) -> BudgetConfig:
        """Return the configuration in force (do not mutate it: use set_config)."""
        return self._config

    def cameras(self) -> list[str]:
        """Return the cameras seen, in order of first trace."""
        return list(self._cameras)

    def silent_configured_cameras(self) -> list[str]:
        """Return the cameras the budget file names that no trace has come from."""
        return [name for name in self._config.cameras if name not in self._cameras]

    def budgets(self, camera: str) -> BudgetConfig:
        """Return the budgets in force for one camera (its section of the file applied)."""
        config = self._per_camera.get(camera)
        if config is None:
            config = self._config.for_camera(camera)
            if camera in self._config.cameras:  # bounded: only the file's cameras are kept
                self._per_camera[camera] = config
        return config

    def _max_age_s(self) -> Optional[float]:
        return self._config.window_max_age_s or None

    def set_config(self, config: BudgetConfig) -> None:
        """
        Apply a new configuration; raises ValueError (keeping the old one) if invalid.

        Budgets and thresholds apply from the next observe/statuses; a new
        window size resizes every window keeping the newest samples.
        """
        config = own_copy(config.validate())
        old = self._config
        self._config = config
        self._per_camera.clear()
        size = int(config.window_size)
        max_age = self._max_age_s()
        if size != old.window_size or config.window_max_age_s != old.window_max_age_s:
            for camera in self._cameras.values():
                for window in camera.windows():
                    window.resize(size)
                    window.max_age_s = max_age
                camera.recent_misses = collections.deque(camera.recent_misses, maxlen=size)
            if size < old.window_size:
                release_free_memory()

    def observe(self, trace: FrameTrace, now_ns: Optional[int] = None) -> Optional[DeadlineMiss]:
        """
        Record one frame's trace; return a DeadlineMiss if it ended after the deadline.

        ``now_ns`` is the receipt time, used to age samples and detect stale
        streams.  A trace without stages carries no timing and is ignored.
        """
        stages = trace.stages
        if not stages:
            return None
        if now_ns is None:
            now_ns = frame.now_ns()
        camera = self._admit(trace, now_ns)
        states = camera.stages
        hops_ms = 0.0
        ingest_ms: Optional[float] = None
        for timing, hop_ns in hops(trace.stamp_ns, stages):
            state = states.get(timing.stage)
            if state is None:
                state = states[timing.stage] = _StageState(
                    self._config.window_size, self._max_age_s(), now_ns)
            hop_ms = hop_ns / 1e6
            wait_ms = timing.queue_wait_ns / 1e6
            service_ms = timing.service_ns / 1e6
            state.service.add(service_ms, now_ns)
            state.queue_wait.add(wait_ms, now_ns)
            state.total.add(wait_ms + service_ms, now_ns)
            state.transport.add(hop_ms, now_ns)
            state.last_ns = now_ns
            if ingest_ms is None:
                ingest_ms = hop_ms
            else:
                hops_ms += hop_ms
        latency_ms = (stages[-1].end_ns - trace.stamp_ns) / 1e6
        ingest_ms = ingest_ms if ingest_ms is not None else 0.0  # a trace has >= 1 stage
        camera.ingest.add(ingest_ms, now_ns)
        camera.transport.add(hops_ms, now_ns)
        camera.end_to_end.add(latency_ms, now_ns)
        camera.last_ns = now_ns
        camera.frames += 1
        if latency_ms <= self.budgets(trace.camera).deadline_ms:
            return None
        miss = blame(trace, self.budgets(trace.camera), latency_ms, ingest_ms, hops_ms)
        camera.misses += 1
        camera.blamed[miss.worst_stage] += 1
        camera.recent_misses.append((now_ns, miss.worst_stage))
        return miss

    def _admit(self, trace: FrameTrace, now_ns: int) -> '_CameraState':
        """
        Return the state of the trace's camera, creating it (and its stages) within bounds.

        Raises InputRefused, changing nothing, for an invalid camera or stage name, or when
        the trace would need more than max_cameras cameras or max_stages stages. At the
        bound, the camera (or stage) silent the longest makes room when it has been silent
        longer than stale_timeout_s: a live camera is never pushed out by new names.
        """
        config = self._config
        camera = self._cameras.get(trace.camera)
        if camera is None:
            check_name(trace.camera, 'camera name', CAMERA_NAME_RE)
        new_stages = [t.stage for t in trace.stages
                      if camera is None or t.stage not in camera.stages]
        for stage in new_stages:
            check_name(stage, 'stage name', STAGE_NAME_RE)
        stale_ns = now_ns - config.stale_timeout_s * 1e9
        if new_stages:
            known = len(camera.stages) if camera is not None else 0
            room = config.max_stages - known
            if len(set(new_stages)) > room and camera is not None:
                room += _evict(camera.stages, stale_ns, len(set(new_stages)) - room)
            if len(set(new_stages)) > room:
                raise InputRefused('too_many', f'trace of camera {trace.camera!r} would need '
                                   f'{known + len(set(new_stages))} stages, max_stages is '
                                   f'{config.max_stages}')
        if camera is None:
            if len(self._cameras) >= config.max_cameras and \
                    not _evict(self._cameras, stale_ns, 1):
                raise InputRefused('too_many', f'camera {trace.camera!r} would be camera '
                                   f'{len(self._cameras) + 1}, max_cameras is '
                                   f'{config.max_cameras} and none is stale')
            camera = self._cameras[trace.camera] = _CameraState(
                config.window_size, self._max_age_s(), now_ns)
        return camera

    def clock_jumped(self, now_ns: int) -> None:
        """
        Start every window again at ``now_ns``: the clock jumped (bag loop, simulator reset).

        Samples and receipt times of the old time line would otherwise make a whole window
        look fresh after a jump back (no STALE while nothing comes) or stale after one forward;
        counters (frames, misses, blame) stay.
        """
        self.clock_jumps += 1
        for camera in self._cameras.values():
            for window in camera.windows():
                window.clear()
            camera.recent_misses.clear()
            camera.last_ns = now_ns
            for state in camera.stages.values():
                state.last_ns = now_ns

    def expire(self, now_ns: int) -> int:
        """Forget cameras and stages silent for entry_timeout_s; return how many went."""
        before_ns = now_ns - self._config.entry_timeout_s * 1e9
        gone = [name for name, camera in self._cameras.items() if camera.last_ns < before_ns]
        for name in gone:
            del self._cameras[name]
        count = len(gone)
        for camera in self._cameras.values():
            stages = [s for s, state in camera.stages.items() if state.last_ns < before_ns]
            for stage in stages:
                del camera.stages[stage]
            count += len(stages)
        return count

    # ----------------------------------------------------------------- verdicts

    def statuses(self, now_ns: Optional[int] = None) -> list[StageStatus]:
        """
        Judge every (camera, stage) and each camera's ingest, transport, end_to_end.

        Order: per camera (first seen first), its stages in pipeline order,
        then ingest, transport and end_to_end.  (A stage that calls itself
        'ingest', 'transport' or 'end_to_end' in its traces would share a name
        with a path item: stage nodes should not.)
        """
        return [verdict.status() for verdict in self.verdicts(now_ns)]

    def verdicts(self, now_ns: Optional[int] = None) -> list[Verdict]:
        """
        Return every item's statistics and verdict, in statuses() order.

        Each window is summarised once per call; statuses() and summary() render these.
        """
        if now_ns is None:
            now_ns = frame.now_ns()
        self.expire(now_ns)
        results: list[Verdict] = []
        for name, camera in self._cameras.items():
            stages = [self._stage_verdict(name, camera, stage, state, now_ns)
                      for stage, state in camera.stages.items()]
            ingest, transport = (self._path_verdict(name, camera, item, now_ns)
                                 for item in (INGEST, TRANSPORT))
            results += stages + [ingest, transport,
                                 self._end_to_end_verdict(name, camera, now_ns,
                                                          stages, ingest, transport)]
        return results

    def _stale_message(self, camera: _CameraState, last_ns: int, now_ns: int
                       ) -> Optional[str]:
        """Return why an item is stale at ``now_ns``, or None when it is live."""
        timeout_ns = self._config.stale_timeout_s * 1e9
        silent_ns = now_ns - camera.last_ns
        if silent_ns > timeout_ns:
            return f'no frames for {silent_ns / 1e9:.1f} s'
        if now_ns - last_ns > timeout_ns:
            return (f'missing from the traces for {(now_ns - last_ns) / 1e9:.1f} s '
                    'while frames still arrive (stage down or bypassed?)')
        return None

    def _stage_verdict(self, camera_name: str, camera: _CameraState, stage: str,
                       state: _StageState, now_ns: int) -> StageVerdict:
        config = self.budgets(camera_name)
        q = float(config.warn_percentile)
        service = state.service.summary(now_ns)
        wait = state.queue_wait.summary(now_ns)
        total = state.total.summary(now_ns)
        service_q, wait_q, total_q = (s.percentile(q) for s in (service, wait, total))
        budget = config.stage_budgets_ms.get(stage)
        over = total.count_above(budget) if budget is not None else 0
        level, message = budget_ladder(
            stage, self._stale_message(camera, state.last_ns, now_ns), total.count,
            config.min_samples, q, total_q, budget,
            lambda: ', cause: ' + cause_of(q, service_q, wait_q))
        return StageVerdict(stage, camera_name, level, message, total, q, total_q, budget,
                            service, wait, state.transport.summary(now_ns), over,
                            camera.blamed.get(stage, 0), (now_ns - state.last_ns) / 1e9)

    def _path_verdict(self, camera_name: str, camera: _CameraState, item: str,
                      now_ns: int) -> PathVerdict:
        """Judge a camera's ingest or transport sum against its budget."""
        config = self.budgets(camera_name)
        q = float(config.warn_percentile)
        if item == INGEST:
            window, budget = camera.ingest, float(config.ingest_ms)
            what = 'capture stamp to first-stage receipt'
        else:
            window, budget = camera.transport, float(config.transport_ms)
            what = 'sum of the hops between stages'
        summary = window.summary(now_ns)
        value_q = summary.percentile(q)
        level, message = budget_ladder(
            item, self._stale_message(camera, camera.last_ns, now_ns), summary.count,
            config.min_samples, q, value_q, budget, lambda: f' ({what})')
        return PathVerdict(item, camera_name, level, message, summary, q, value_q, budget,
                           summary.count_above(budget), camera.blamed.get(item, 0))

    def _end_to_end_verdict(self, camera_name: str, camera: _CameraState, now_ns: int,
                            stages: list[StageVerdict], ingest: PathVerdict,
                            transport: PathVerdict) -> EndToEndVerdict:
        """
        Judge a camera's deadline misses in the window.

        WARN on any miss; ERROR when the miss rate exceeds miss_rate_error and
        the window holds at least min_samples frames (one slow first frame of
        a fresh start is a WARN, not an ERROR); ERROR when no frames arrive.
        """
        config = self.budgets(camera_name)
        q = float(config.warn_percentile)
        deadline = float(config.deadline_ms)
        summary = camera.end_to_end.summary(now_ns)
        value_q = summary.percentile(q)
        misses = summary.count_above(deadline)
        rate = misses / summary.count if summary.count else 0.0
        worst = self._worst_in_window(camera, now_ns, [ingest, *stages, transport]) \
            if misses else None
        timeout_ns = config.stale_timeout_s * 1e9
        silent_ns = now_ns - camera.last_ns
        if silent_ns > timeout_ns:
            level, message = Level.ERROR, f'no frames for {silent_ns / 1e9:.1f} s'
        elif misses == 0:
            level = Level.OK
            message = (f'{percentile_key(q)} {value_q:.3f} ms, no deadline misses in '
                       f'{summary.count} frames (deadline {deadline:.3f} ms)')
        else:
            error = rate > config.miss_rate_error and summary.count >= config.min_samples
            level = Level.ERROR if error else Level.WARN
            message = (f'{misses} of {summary.count} frames missed the {deadline:.3f} ms '
                       f'deadline ({rate:.1%} {">" if rate > config.miss_rate_error else "<="}'
                       f' {config.miss_rate_error:.1%}); worst stage: {worst}')
        return EndToEndVerdict(END_TO_END, camera_name, level, message, summary, q, value_q,
                               deadline, misses, rate, config.miss_rate_error, worst,
                               camera.frames, camera.misses, silent_ns / 1e9)

    def _worst_in_window(self, camera: _CameraState, now_ns: int,
                         items: list[Union[StageVerdict, PathVerdict]]) -> str:
        """
        Name the item blamed most among the window's misses.

        Falls back to ranking the items' warn percentiles (of their verdicts, in pipeline
        order) against their budgets like a single miss (e.g. after a lower deadline made
        old frames count as misses that raised no event).
        """
        oldest = camera.end_to_end.oldest_time_ns(now_ns)
        blamed = collections.Counter(stage for t, stage in camera.recent_misses
                                     if oldest is not None and t >= oldest)
        if blamed:
            stage, count = blamed.most_common(1)[0]
            return f'{stage} ({count} of {sum(blamed.values())} misses)'
        ranked = [(item.name, '', item.at_warn_percentile_ms,
                   math.nan if item.budget_ms is None else item.budget_ms)
                  for item in items if not math.isnan(item.at_warn_percentile_ms)]
        if not ranked:
            return 'unknown'
        stage, _, value, budget = worst_item(ranked)
        q = float(self._config.warn_percentile)
        return f'{stage} ({percentile_key(q)} {value:.3f} ms vs budget {fmt_ms(budget)} ms)'

    # ------------------------------------------------------------------ reports

    def summary(self, now_ns: Optional[int] = None) -> dict[str, Any]:
        """
        Return the JSON-ready latency report (None where a window has no data).

        Per camera: ``frames`` and ``deadline_misses`` (since start), per stage
        the service-time statistics (count, p50_ms, p95_ms, p99_ms, max_ms)
        with the queue wait separately (queue_wait_p50_ms, queue_wait_p99_ms)
        and the budget (which covers queue wait + service, see total_*_ms), and
        ``ingest``, ``transport`` and ``end_to_end`` entries with the same
        statistics keys (their budget_ms; the deadline for end_to_end).
        """
        if now_ns is None:
            now_ns = frame.now_ns()
        judged = iter(self.verdicts(now_ns))
        cameras: dict[str, Any] = {}
        for name, camera in self._cameras.items():
            stages = {stage: next(judged).entry() for stage in camera.stages}
            report: dict[str, Any] = {
                'deadline_ms': float(self.budgets(name).deadline_ms),
                'frames': camera.frames,
                'deadline_misses': camera.misses,
                'miss_rate': camera.misses / camera.frames if camera.frames else 0.0,
                'stages': stages,
            }
            for item in (INGEST, TRANSPORT, END_TO_END):
                report[item] = next(judged).entry()
            cameras[name] = report
        return {
            'now_ns': int(now_ns),
            'deadline_ms': float(self._config.deadline_ms),
            'clock_jumps': self.clock_jumps,
            'warn_percentile': float(self._config.warn_percentile),
            'config': self._config.to_mapping(),
            'cameras': cameras,
        }


def blame(trace: FrameTrace, config: BudgetConfig, latency_ms: float,
          ingest_ms: Optional[float] = None, transport_ms: Optional[float] = None
          ) -> DeadlineMiss:
    """
    Return the deadline miss of a late frame, naming the item most over its own budget.

    ``config`` holds the budgets of the frame's camera. Ingest and transport are taken from the
    trace's hops unless given (the tracker has summed them already); see worst_item.
    """
    if ingest_ms is None or transport_ms is None:
        walked = [hop_ns / 1e6 for _, hop_ns in hops(trace.stamp_ns, trace.stages)]
        ingest_ms = walked[0] if walked else 0.0
        transport_ms = sum(walked[1:])
    # (name, component, time, budget or NaN), in pipeline order.
    items: list[tuple[str, str, float, float]] = [
        (INGEST, TRANSPORT, ingest_ms, config.ingest_ms)]
    for timing in trace.stages:
        wait_ms = timing.queue_wait_ns / 1e6
        service_ms = timing.service_ns / 1e6
        budget = config.stage_budgets_ms.get(timing.stage)
        items.append((timing.stage, SERVICE if service_ms >= wait_ms else QUEUE_WAIT,
                      wait_ms + service_ms, math.nan if budget is None else budget))
    items.append((TRANSPORT, TRANSPORT, transport_ms, config.transport_ms))
    worst = worst_item(items)
    deadline = float(config.deadline_ms)
    return DeadlineMiss(trace.camera, trace.seq, trace.stamp_ns, trace.frame_id,
                        deadline, latency_ms, latency_ms - deadline,
                        worst[0], worst[1], worst[2], worst[3])


def _evict(entries: dict[str, Any], stale_before_ns: float, wanted: int) -> int:
    """Remove up to ``wanted`` entries silent since before ``stale_before_ns``, oldest first."""
    stale = sorted((state.last_ns, name) for name, state in entries.items()
                   if state.last_ns < stale_before_ns)[:wanted]
    for _, name in stale:
        del entries[name]
    return len(stale)

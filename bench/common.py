"""
What the benchmarks share: the model to run, frame records, statistics, CPU and memory sampling.

Every variant of the suite, whatever its plumbing, ends up with the same per-frame record: the
capture stamp and, per stage, when the stage received, started and ended the frame
(``time.time_ns``, the clock of :mod:`edge_infer_ros.core.frame`). All figures are computed from
these records by the same code, so end to end means the same thing for every variant: capture
stamp to the end of the last stage (the command published).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
from pathlib import Path
import threading
import time
from typing import Any, Callable, Iterable, Optional

from edge_infer_ros.core.frame import FrameTrace
from edge_infer_ros.core.resources import config_path, default_model_path
from edge_infer_ros.core.shape import BUDGETED_STAGES
from edge_infer_ros.monitor.config import BudgetConfig
import numpy as np
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / 'bench' / 'results'
#: Stage names in pipeline order after the camera, as the stage nodes stamp them (core/shape.py).
STAGES = BUDGETED_STAGES
#: Input size of the stand-in model (the shipped detector's size too).
STANDIN_SIZE = 320


def opencv_batched_nms(xywh: Any, scores: Any, class_ids: Any, score_threshold: float,
                       iou_threshold: float, batched: Optional[bool] = None) -> np.ndarray:
    """
    Class-aware NMS with OpenCV: ``cv2.dnn.NMSBoxesBatched`` where it exists (OpenCV 4.7+).

    OpenCV 4.5 and 4.6 (Ubuntu 22.04's and 24.04's) lack it: there, ``cv2.dnn.NMSBoxes`` runs
    per class and the kept indices are merged, best score first. ``batched`` forces one way
    (tests compare both). Returns indices into the inputs.
    """
    import cv2
    if batched is None:
        batched = hasattr(cv2.dnn, 'NMSBoxesBatched')
    xywh, scores = [list(map(float, b)) for b in xywh], [float(s) for s in scores]
    class_ids = [int(c) for c in class_ids]
    if batched:
        keep = cv2.dnn.NMSBoxesBatched(xywh, scores, class_ids, score_threshold, iou_threshold)
        return np.asarray(keep, np.int64).reshape(-1)
    kept: list[int] = []
    for cls in sorted(set(class_ids)):
        members = [i for i, c in enumerate(class_ids) if c == cls]
        chosen = cv2.dnn.NMSBoxes([xywh[i] for i in members], [scores[i] for i in members],
                                  score_threshold, iou_threshold)
        kept.extend(members[int(j)] for j in np.asarray(chosen).reshape(-1))
    return np.asarray(sorted(kept, key=lambda i: -scores[i]), np.int64)


def shipped_model() -> Optional[str]:
    """Return the shipped detector (installed share, else the source tree), or None."""
    for candidate in (default_model_path(), str(REPO / 'models' / 'detector.onnx')):
        if Path(candidate).is_file():
            return candidate
    return None


def _load_test_models() -> Any:
    spec = importlib.util.spec_from_file_location('eir_onnx_models',
                                                  REPO / 'test' / 'support' / 'onnx_models.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_standin_model(path: Path) -> str:
    """
    Write a stand-in detector (test/support/onnx_models.make_yolov8_model) and return it.

    Its output is constant: low-score background plus a few clusters of overlapping boxes
    above the score threshold, so decode and NMS have real work. Inference itself is nearly
    free (one ReduceMean over the input), so figures taken with it show pipeline costs, not
    model costs.
    """
    from edge_infer_ros.stages.synthetic import CLASS_NAMES
    models = _load_test_models()
    size = STANDIN_SIZE
    anchors = (size // 8) ** 2 + (size // 16) ** 2
    boxes, scores = models.background(anchors, len(CLASS_NAMES), (size, size))
    rng = np.random.default_rng(1)
    index = 0
    for cluster in range(6):  # 6 objects, 5 overlapping candidates each
        cx, cy = rng.uniform(40, size - 40, 2)
        w, h = rng.uniform(20, 80, 2)
        for _ in range(5):
            boxes[index] = (cx + rng.normal(0, 2), cy + rng.normal(0, 2),
                            w * rng.uniform(0.9, 1.1), h * rng.uniform(0.9, 1.1))
            scores[index, cluster % len(CLASS_NAMES)] = rng.uniform(0.5, 0.95)
            index += 17
    path.parent.mkdir(parents=True, exist_ok=True)
    names = dict(enumerate(CLASS_NAMES))
    partial = path.with_name(f'.{path.name}.{os.getpid()}.onnx')
    models.make_yolov8_model(partial, num_classes=len(CLASS_NAMES), num_anchors=anchors,
                             input_hw=(size, size), boxes=boxes, scores=scores,
                             metadata={'names': repr(names), 'imgsz': f'[{size}, {size}]'})
    os.replace(partial, path)  # atomic: a run reading the model never sees half a file
    return str(path)


def resolve_model(path: str, workdir: Path) -> tuple[str, str]:
    """Return (model path, kind): the given one, else the shipped one, else a stand-in."""
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f'model {path} not found')
        return str(Path(path).resolve()), 'given'
    shipped = shipped_model()
    if shipped:
        return shipped, 'shipped'
    return make_standin_model(workdir / 'standin_detector.onnx'), 'stand-in'


def budgets(path: str = '') -> dict[str, float]:
    """Return the stage budgets and the deadline (ms) of config/budget.yaml (or ``path``)."""
    with open(path or config_path('budget.yaml'), encoding='utf-8') as stream:
        config = BudgetConfig.from_mapping(yaml.safe_load(stream))  # the monitor's own reading
    result = {str(k): float(v) for k, v in config.stage_budgets_ms.items()}
    result.update({'ingest': float(config.ingest_ms), 'transport': float(config.transport_ms),
                   'slack': float(config.slack_ms), 'deadline': float(config.deadline_ms)})
    return result


# -- frame records -------------------------------------------------------------------------
def record_of(trace: FrameTrace) -> dict[str, Any]:
    """Return the JSON form of one frame's trace."""
    return {'seq': trace.seq, 'stamp_ns': trace.stamp_ns,
            'stages': [[t.stage, t.received_ns, t.start_ns, t.end_ns] for t in trace.stages]}


def records_from_chrome_trace(path: str) -> list[dict[str, Any]]:
    """
    Rebuild frame records from the runner's Chrome/Perfetto profile (``--profile``).

    The profile holds, per frame, the end-to-end slice (stamp, duration) and per stage the
    work slice (start, duration) and the queue slice (received, wait) when the frame waited.
    Times are microseconds there: records come back to within a microsecond.
    """
    with open(path, encoding='utf-8') as stream:
        events = json.load(stream)['traceEvents']
    frames: dict[tuple[str, int], dict[str, Any]] = {}

    def frame(event: dict) -> dict[str, Any]:
        key = (event['args']['camera'], event['args']['seq'])
        return frames.setdefault(key, {'seq': key[1], 'stamp_ns': None, 'stages': {},
                                       'waits': {}})

    for event in events:
        if event.get('ph') != 'X':
            continue
        cat = event.get('cat')
        begin = int(round(event['ts'] * 1e3))
        length = int(round(event['dur'] * 1e3))
        if cat == 'frame':
            frame(event)['stamp_ns'] = begin
        elif cat == 'stage':
            frame(event)['stages'][event['name']] = (begin, begin + length)
        elif cat == 'queue':
            frame(event)['waits'][event['name'][:-len(' queue')]] = begin
    records = []
    for item in frames.values():
        if item['stamp_ns'] is None:
            continue
        ordered = sorted(item['stages'].items(), key=lambda kv: kv[1][0])
        stages = [[name, item['waits'].get(name, start), start, end]
                  for name, (start, end) in ordered]
        records.append({'seq': item['seq'], 'stamp_ns': item['stamp_ns'], 'stages': stages})
    records.sort(key=lambda r: r['seq'])
    return records


def stats(values: Iterable[float]) -> dict[str, Any]:
    """Return count, p50, p95, p99, max and mean of samples (ms); None when there are none."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return {'count': 0, 'p50_ms': None, 'p95_ms': None, 'p99_ms': None, 'max_ms': None,
                'mean_ms': None}
    p50, p95, p99 = np.percentile(array, (50, 95, 99))
    return {'count': int(array.size), 'p50_ms': float(p50), 'p95_ms': float(p95),
            'p99_ms': float(p99), 'max_ms': float(array.max()), 'mean_ms': float(array.mean())}


def summarize(records: list[dict[str, Any]], has_queue: bool) -> dict[str, Any]:
    """
    Return the per-stage, ingest, transport, end-to-end and overhead statistics of records.

    A stage's ``service`` is end - start; ``queue_wait`` is start - received (only where the
    variant has a queue of its own); ``total`` is their sum (what a stage budget covers);
    ``ingest`` is capture stamp -> first stage received; ``transport`` the sum of the hops
    between stages after that; ``overhead`` is end to end minus the detector stage.
    """
    service: dict[str, list[float]] = {s: [] for s in STAGES}
    wait: dict[str, list[float]] = {s: [] for s in STAGES}
    total: dict[str, list[float]] = {s: [] for s in STAGES}
    ingest, transport, e2e, overhead = [], [], [], []
    for record in records:
        stages = record['stages']
        if not stages:
            continue
        previous = record['stamp_ns']
        hops = 0.0
        detector = 0.0
        for index, (name, received, start, end) in enumerate(stages):
            if name not in service:
                service[name], wait[name], total[name] = [], [], []
            service[name].append((end - start) / 1e6)
            wait[name].append((start - received) / 1e6)
            total[name].append((end - received) / 1e6)
            hop = (received - previous) / 1e6
            if index == 0:
                ingest.append(hop)
            else:
                hops += hop
            if name == 'detector':
                detector += (end - start) / 1e6
            previous = end
        latency = (previous - record['stamp_ns']) / 1e6
        transport.append(hops)
        e2e.append(latency)
        overhead.append(latency - detector)
    result = {'stages': {}, 'ingest': stats(ingest), 'transport': stats(transport),
              'end_to_end': stats(e2e), 'overhead': stats(overhead)}
    for name in service:
        if not service[name]:
            continue
        result['stages'][name] = {'service': stats(service[name]),
                                  'queue_wait': stats(wait[name]) if has_queue else None,
                                  'total': stats(total[name])}
    return result


def end_to_end_ms(records: list[dict[str, Any]]) -> list[float]:
    """Return the end-to-end latency (ms) of every record with stages."""
    return [(r['stages'][-1][3] - r['stamp_ns']) / 1e6 for r in records if r['stages']]


def frame_window_ns(records: list[dict[str, Any]]) -> tuple[int, int]:
    """Return (first capture stamp, last stage end) of the records."""
    done = [r for r in records if r['stages']]
    return (min(r['stamp_ns'] for r in done), max(r['stages'][-1][3] for r in done))


# -- CPU and memory --------------------------------------------------------------------------
class TreeSampler:
    """
    Sample the CPU time and resident memory of a process and all its descendants.

    CPU time is the sum of user + system time of every process of the tree (an exited
    process keeps its last sample), so the CPU spent between two instants can be read off
    the series. Memory is the sum of the RSS of the live processes (pages shared between
    processes, such as libraries, count once per process).
    """

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self._root = psutil.Process(pid)
        self._interval = interval_s
        self._procs: dict[int, psutil.Process] = {pid: self._root}
        self._cpu: dict[int, float] = {}
        self.samples: list[tuple[int, float, int]] = []  # (time_ns, cpu_s, rss_bytes)
        self.system: list[float] = []  # busy CPU seconds of the whole machine, per sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='bench:sampler', daemon=True)

    def start(self) -> 'TreeSampler':
        """Start sampling in a thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and stop."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _sample(self) -> None:
        try:
            for child in self._root.children(recursive=True):
                self._procs.setdefault(child.pid, child)
        except psutil.Error:
            pass
        rss = 0
        for pid, proc in list(self._procs.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    memory = proc.memory_info().rss
            except psutil.Error:
                continue
            self._cpu[pid] = times.user + times.system
            rss += memory
        machine = psutil.cpu_times()
        self.system.append(machine.user + machine.nice + machine.system + machine.irq +
                           machine.softirq + getattr(machine, 'steal', 0.0))
        self.samples.append((time.time_ns(), sum(self._cpu.values()), rss))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)
        self._sample()

    def cpu_between(self, begin_ns: int, end_ns: int) -> float:
        """Return the CPU seconds the tree spent between two instants (interpolated)."""
        if len(self.samples) < 2:
            return math.nan
        times = np.array([s[0] for s in self.samples], dtype=np.float64)
        cpu = np.array([s[1] for s in self.samples])
        return float(np.interp(end_ns, times, cpu) - np.interp(begin_ns, times, cpu))

    def others_cpu_between(self, begin_ns: int, end_ns: int) -> float:
        """Return the CPU seconds the rest of the machine spent between two instants."""
        if len(self.samples) < 2:
            return math.nan
        times = np.array([s[0] for s in self.samples], dtype=np.float64)
        system = np.asarray(self.system)
        busy = float(np.interp(end_ns, times, system) - np.interp(begin_ns, times, system))
        return max(0.0, busy - self.cpu_between(begin_ns, end_ns))

    def total_cpu_s(self) -> float:
        """Return the CPU seconds of the whole tree, start-up included."""
        return self.samples[-1][1] if self.samples else math.nan

    def peak_rss_bytes(self) -> int:
        """Return the largest summed RSS seen."""
        return max((s[2] for s in self.samples), default=0)


def machine_state() -> dict[str, Any]:
    """Return what says whether the machine was loaded: load average, CPU use, CPUs."""
    return {'cpus': os.cpu_count(), 'loadavg': list(os.getloadavg()),
            'cpu_percent_1s': psutil.cpu_percent(interval=1.0),
            'time': time.strftime('%Y-%m-%d %H:%M:%S')}


def busy_processes(exclude: Iterable[int] = ()) -> list[dict[str, Any]]:
    """Return the processes outside this benchmark that used a lot of CPU in the last second."""
    skip = set(exclude) | {os.getpid()}
    procs = []
    for proc in psutil.process_iter(['pid', 'name']):
        if proc.info['pid'] in skip:
            continue
        try:
            proc.cpu_percent(None)
            procs.append(proc)
        except psutil.Error:
            pass
    time.sleep(1.0)
    busy = []
    for proc in procs:
        try:
            share = proc.cpu_percent(None)
            if share >= 20.0:
                busy.append({'pid': proc.pid, 'name': proc.name(), 'cpu_percent': share})
        except psutil.Error:
            pass
    return busy


def variant_main(argv: Optional[list[str]], doc: str, has_queue: bool,
                 run_variant: Callable[[str, argparse.Namespace], dict[str, Any]],
                 label: Callable[[argparse.Namespace, dict[str, Any]], str],
                 add_arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None
                 ) -> int:
    """
    Run one variant as its own process: the command line the suite calls for each.

    Every variant takes the same options (model, frames, size, rate, where to write its
    records) and prints the same one-line summary, so they are parsed and printed here once.
    """
    parser = argparse.ArgumentParser(description=doc.split('\n\n')[0])
    parser.add_argument('--model', default='', help='ONNX model (default: the shipped one)')
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--fps', type=float, default=30.0)
    parser.add_argument('--json', default='', help='write the records here')
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    model, _ = resolve_model(args.model, RESULTS / 'models')
    result = run_variant(model, args)
    summary = summarize(result['records'], has_queue=has_queue)
    print(f'{label(args, result)} {args.width}x{args.height}: {result["frames"]}, end to end '
          f'p50 {summary["end_to_end"]["p50_ms"]:.2f} ms, p99 '
          f'{summary["end_to_end"]["p99_ms"]:.2f} ms')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(result, stream)
    return 0

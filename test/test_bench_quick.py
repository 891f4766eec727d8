"""
The benchmarks run and their results are well-formed (no timing is asserted).

Runs ``python -m bench.suite --quick`` and ``python -m bench.hop --quick`` as a user would and
checks the JSON keys, that the numbers are finite (and positive where they must be), that the
ratios were computed and that the pictures are valid PNG files.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import struct
import subprocess
import sys
from typing import Any
import zlib

import pytest
from support.fast_dds import fast_dds_2_wheels

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
QUICK_VARIANTS = ('seed_loop', 'naive_rclpy', 'composed', 'split_raw')


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, '-m', *args], cwd=str(ROOT), env=os.environ.copy(),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (f'{args} failed ({result.returncode}):\n'
                                    f'{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    return result


def _positive(value: Any, what: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), (what, value)
    assert math.isfinite(value) and value > 0, (what, value)


def _non_negative(value: Any, what: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), (what, value)
    assert math.isfinite(value) and value >= 0, (what, value)


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f'{path} is not a PNG file'
    length, kind = struct.unpack('>I4s', data[8:16])
    assert kind == b'IHDR' and length == 13, f'{path}: no IHDR chunk first'
    width, height = struct.unpack('>II', data[16:24])
    assert width > 100 and height > 100, f'{path}: {width}x{height}'
    assert zlib.crc32(data[12:29]) == struct.unpack('>I', data[29:33])[0], f'{path}: bad CRC'
    assert data.rstrip(b'\0').endswith(b'IEND\xaeB`\x82'), f'{path}: truncated'


def _check_stats(stats: dict, what: str, positive: bool = True) -> None:
    assert stats['count'] > 0, what
    check = _positive if positive else _non_negative
    for key in ('p50_ms', 'p95_ms', 'p99_ms', 'max_ms'):
        check(stats[key], f'{what}.{key}')
    assert stats['p50_ms'] <= stats['p95_ms'] <= stats['p99_ms'] <= stats['max_ms'], what


@pytest.mark.slow
@pytest.mark.bench_format
def test_quick_suite_results_are_well_formed(tmp_path: Path) -> None:
    out = tmp_path / 'suite'
    _run(['bench.suite', '--quick', '--out', str(out)], timeout=240)
    summary = json.loads((out / 'summary.json').read_text(encoding='utf-8'))
    for key in ('quick', 'frames', 'fps', 'model', 'model_kind', 'machine_before',
                'machine_after', 'loaded', 'budget', 'sizes', 'monitor_overhead'):
        assert key in summary, key
    assert summary['quick'] is True
    assert summary['model_kind'] in ('shipped', 'stand-in', 'given')
    _positive(summary['budget']['deadline'], 'deadline')
    assert list(summary['sizes']) == ['640x480']
    block = summary['sizes']['640x480']
    assert set(block['variants']) == set(QUICK_VARIANTS)
    for name, entry in block['variants'].items():
        assert 'error' not in entry, f'{name}: {entry.get("error")}'
        assert entry['frames_recorded'] > 0, name
        _check_stats(entry['end_to_end'], f'{name}.end_to_end')
        _check_stats(entry['overhead'], f'{name}.overhead')
        _check_stats(entry['ingest'], f'{name}.ingest', positive=False)
        _check_stats(entry['transport'], f'{name}.transport', positive=False)
        assert set(entry['stages']) == {'preprocess', 'detector', 'nms', 'action'}, name
        for stage, figures in entry['stages'].items():
            _check_stats(figures['service'], f'{name}.{stage}.service')
            _check_stats(figures['total'], f'{name}.{stage}.total')
            if entry['has_queue']:
                _check_stats(figures['queue_wait'], f'{name}.{stage}.queue_wait',
                             positive=False)
            else:
                assert figures['queue_wait'] is None
        _positive(entry['throughput_fps'], f'{name}.throughput_fps')
        for key in ('window_s', 'cpu_s', 'cpu_percent', 'cpu_ms_per_frame', 'total_cpu_s'):
            _positive(entry['cpu'][key], f'{name}.cpu.{key}')
        _positive(entry['peak_rss_mb'], f'{name}.peak_rss_mb')
        assert len(entry['e2e_samples_ms']) == entry['frames_recorded']
    assert set(block['ratios']) == {'composed_vs_seed_loop', 'composed_vs_naive_rclpy'}
    for name, values in block['ratios'].items():
        assert set(values) == {'end_to_end_p50', 'end_to_end_p99', 'overhead_p50',
                               'overhead_p99'}, name
        for key, value in values.items():
            _positive(value, f'{name}.{key}')
    over = block['composed_over_seed_loop']
    assert set(over) == {'end_to_end_p50', 'end_to_end_p99', 'overhead_p99'}
    for key, value in over.items():
        _positive(value, f'composed_over_seed_loop.{key}')
    saturation = block['saturation']
    assert set(saturation['variants']) == {'seed_loop', 'composed'}
    for name, run in saturation['variants'].items():
        assert not run.get('error'), f'saturation {name}: {run.get("error")}'
        assert run['frames_recorded'] > 0, name
        _positive(run['throughput_fps'], f'saturation.{name}.throughput_fps')
        _check_stats(run['end_to_end'], f'saturation.{name}.end_to_end')
    _positive(saturation['throughput_ratio'], 'saturation.throughput_ratio')
    _positive(saturation['end_to_end_p99_ratio'], 'saturation.end_to_end_p99_ratio')
    for picture in block['pictures'].values():
        _check_png(out / picture)
    overhead = summary['monitor_overhead']
    assert 'error' not in overhead, overhead
    for key in ('monitoring_p50_us', 'ratio_monitoring_to_baseline',
                'ratio_instrumented_to_baseline'):
        _positive(overhead[key], key)
    _positive(overhead['baseline']['p50_us'], 'baseline p50')
    assert isinstance(overhead['target_met'], bool)
    precision = summary['precision']
    assert 'error' not in precision, precision
    _positive(precision['yolov8_shaped']['int8_over_fp32_p50'], 'yolov8_shaped ratio')
    assert precision['yolov8_shaped']['size_bytes']['int8'] > 0
    text = (out / 'summary.md').read_text(encoding='utf-8')
    if summary['model_kind'] == 'shipped':  # the shipped model has its INT8 sibling
        _positive(precision['shipped']['int8_over_fp32_p50'], 'shipped ratio')
        for name in ('fp32', 'int8'):
            assert 0.0 <= precision['shipped']['map'][name]['map50'] <= 1.0
        table = block['precision']
        for key, value in table['int8_over_fp32'].items():
            _positive(value, f'precision.int8_over_fp32.{key}')
        assert '| int8 / fp32 |' in text
    assert '## FP32 vs INT8' in text
    assert '| (3) package, composed |' in text and 'composed_vs_seed_loop' in text
    assert 'Saturation (camera at' in text and '| composed / seed loop |' in text


@pytest.mark.slow
@pytest.mark.bench_format
def test_max_rate_results_are_well_formed(tmp_path: Path) -> None:
    # A narrow window every variant sustains: three short probes each (20, 25, 30 Hz).
    out = tmp_path / 'max_rate'
    result = _run(['bench.suite', '--max-rate', '--max-rate-seconds', '1',
                   '--max-rate-final-seconds', '1', '--max-rate-window', '10', '30',
                   '--out', str(out)], timeout=240)
    assert '| composed / seed_loop |' in result.stdout
    summary = json.loads((out / 'summary.json').read_text(encoding='utf-8'))
    assert summary['mode'] == 'max_rate'
    block = summary['sizes']['640x480']
    assert set(block['variants']) == {'composed', 'seed_loop', 'naive_rclpy'}
    for name, entry in block['variants'].items():
        assert [p['rate_hz'] for p in entry['probes']][0] == 20.0, name
        assert all(p['phase'] in ('binary', 'linear') for p in entry['probes']), name
        assert 20.0 <= entry['max_rate_hz'] <= 30.0, (name, entry['probes'])
        assert not entry['at_lower_bound'], name
        metrics = entry['at_max_rate']
        assert metrics['NUM_FRAMES_SENT'] > 0, name
        assert 0 <= metrics['NUM_MISSED_FRAMES'] <= metrics['NUM_FRAMES_SENT'], name
        for key in ('MEAN_FRAME_RATE', 'MEAN_PLAYBACK_FRAME_RATE', 'FIRST_SENT_RECEIVED_LATENCY',
                    'LAST_SENT_RECEIVED_LATENCY', 'LATENCY_P50', 'LATENCY_P99',
                    'CPU_MS_PER_FRAME'):
            _positive(metrics[key], f'{name}.{key}')
        for key in ('MAX_JITTER', 'MEAN_JITTER', 'STD_DEV_JITTER'):
            _non_negative(metrics[key], f'{name}.{key}')
        assert metrics['LATENCY_P50'] <= metrics['LATENCY_P99'] <= metrics['LATENCY_MAX']
        assert isinstance(entry['final']['sustained'], bool), name
        keys = block['ros2_benchmark'][name]
        assert keys['BasicPerformanceMetrics.MEAN_FRAME_RATE'] == metrics['MEAN_FRAME_RATE']
    assert '# Max-rate search' in (out / 'summary.md').read_text(encoding='utf-8')


@pytest.mark.slow
@pytest.mark.bench_format
def test_quick_hop_results_are_well_formed(tmp_path: Path) -> None:
    path = tmp_path / 'hop.json'
    result = _run(['bench.hop', '--quick', '--json', str(path)], timeout=180)
    assert '(b) / handoff inline, rclpy nodes' in result.stdout
    hop = json.loads(path.read_text(encoding='utf-8'))
    assert list(hop['sizes']) == ['640x480', '1920x1080']
    for size, figures in hop['sizes'].items():
        assert set(figures) == set(hop['labels'])
        for name, stats in figures.items():
            assert stats['count'] > 0, (size, name)
            for key in ('p50_us', 'p99_us', 'mean_us', 'max_us'):
                _positive(stats[key], f'{size}.{name}.{key}')
        ratios = hop['ratios'][size]
        assert set(ratios) == {'a_inline', 'a_thread', 'a_inline_node', 'a_thread_node'}
        for a_name, values in ratios.items():
            assert set(values) == {'b_over_a_p50', 'b_over_a_p99', 'c_over_a_p50',
                                   'c_over_a_p99'}
            for key, value in values.items():
                _positive(value, f'{size}.{a_name}.{key}')
    for name, value in hop['flatness'].items():
        _positive(value, f'flatness.{name}')
    assert hop['targets'] and all(isinstance(v, bool) for v in hop['targets'].values())


@pytest.mark.slow
def test_quick_foreign_publisher_results_are_well_formed(tmp_path: Path) -> None:
    path = tmp_path / 'foreign.json'
    result = _run(['bench.foreign_publisher', '--quick', '--json', str(path)], timeout=240)
    assert '| 640x480 | best_effort -> best_effort | profile | package |' in result.stdout
    foreign = json.loads(path.read_text(encoding='utf-8'))
    assert [c['subscriber'] for c in foreign['cases']] == ['plain', 'package']
    for case in foreign['cases']:
        assert 'error' not in case, case.get('error')
        assert case['sent'] == foreign['frames']
        assert 0 <= case['delivered'] <= case['sent']
        assert len(case['loadavg_1min']) == 2
        if case['delivered'] == 0:  # an xfail below on Fast DDS 2.14, a failure elsewhere
            assert fast_dds_2_wheels() and case['ingest']['count'] == 0, case
        else:
            _check_stats(case['ingest'], f'{case["subscriber"]}.ingest')
    package = foreign['cases'][1]
    if package.get('brackets_delivered') != 2 and fast_dds_2_wheels():
        # Exactness is judged between the two bracket frames; Fast DDS 2.14 (Jazzy wheels)
        # delivers a fifth or less of best-effort frames here (at times none between the
        # brackets) and sometimes loses a bracket.
        pytest.xfail(f'Fast DDS 2.14 lost a bracket frame: {package}')
    assert package['exact'] is True, package  # delivered + counted lost = sent
    assert package['delivered'] + package['lost_counted'] == package['sent']
    empty = [case for case in foreign['cases'] if case['delivered'] == 0]
    if empty:
        pytest.xfail(f'Fast DDS 2.14 delivered no frame between the brackets: {empty}')
    _check_stats(package['end_to_end'], 'package.end_to_end')


@pytest.mark.bench_format
def test_quick_lateness_check_results_are_well_formed() -> None:
    result = _run(['bench.lateness_check', '--quick'], timeout=120)
    figures = json.loads(result.stdout)
    assert figures['frames'] == 400
    for name in ('action_work', 'action_work_with_check', 'late_frame_trace_and_blame'):
        for key in ('p50_ms', 'p99_ms'):
            _positive(figures[name][key], f'{name}.{key}')
    assert isinstance(figures['added_p99_ms'], float)


@pytest.mark.bench_format
@pytest.mark.parametrize('compare, other', [('seed_loop', 'composed'),
                                            ('seed_loop_aa', 'seed_loop_again')])
def test_ab_pair_with_the_seed_loop_is_well_formed(tmp_path: Path, compare: str,
                                                   other: str) -> None:
    out = tmp_path / 'ab.json'
    _run(['bench.ab_composed', '--compare', compare, '--rounds', '1', '--frames', '30',
          '--json', str(out)], timeout=300)
    result = json.loads(out.read_text())
    assert [run['setting'] for run in result['runs']] == ['seed_loop', other]
    for run in result['runs']:
        assert run['accounted'] is True, run
        for key in ('e2e_p50', 'e2e_p99', 'detector_p50', 'cpu_ms_per_frame'):
            _positive(run[key], f'{run["setting"]}.{key}')
        assert run['e2e_p99'] >= run['e2e_p50'], run
    assert set(result['medians']) == {'seed_loop', other}
    verdict = result['verdict']
    assert len(verdict) == 4 and all(line.endswith((': met', ': missed')) for line in verdict)
    assert all(line.startswith((f'{other} / seed_loop,', f'detector p50, {other} - seed_loop:'))
               for line in verdict), verdict


@pytest.mark.bench_format
def test_quick_cold_calls_are_well_formed(tmp_path: Path) -> None:
    path = tmp_path / 'cold.json'
    _run(['bench.cold_calls', '--quick', '--gap-ms', '5', '--json', str(path)], timeout=120)
    figures = json.loads(path.read_text())
    assert figures['calls'] == 20
    assert set(figures['results']) == {'gate, image', 'gate, tensor', 'gate, candidates',
                                       'gate, detections',
                                       'gate, checked candidates (baseline: unchecked)',
                                       'decode (baseline: seed loop)', 'ROS clock reading'}
    for name, result in figures['results'].items():
        for key in ('new_cold', 'before_cold', 'new_warm', 'before_warm', 'ratio_cold',
                    'ratio_warm'):
            _positive(result[key], f'{name}.{key}')

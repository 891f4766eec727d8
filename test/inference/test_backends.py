"""Tests of the ONNX Runtime backend and of backend creation with fallback to the CPU."""

import dataclasses
import hashlib
import importlib.util
import os
from pathlib import Path
import sys
import threading
import time
from unittest import mock

from edge_infer_ros.core.awake import KEEPERS
from edge_infer_ros.inference.backends.base import BackendError, DetectorBackend
from edge_infer_ros.inference.backends.factory import (BACKENDS, create_backend, FallbackBackend,
                                                       load_with_fallback)
from edge_infer_ros.inference.backends.onnxruntime_backend import (affinity_entry,
                                                                   caller_cpus_during_run,
                                                                   OnnxRuntimeBackend,
                                                                   pool_thread_cpus,
                                                                   spinning_entries)
from edge_infer_ros.inference.model_info import load_model_info, ModelError, ModelInfo
import numpy as np
import pytest
from support.onnx_models import make_constant_output_model, make_yolov8_model

TRT_MODULE = 'edge_infer_ros.inference.backends.tensorrt_backend'


@pytest.fixture
def model(tmp_path: Path) -> tuple[ModelInfo, np.ndarray]:
    path, output = make_yolov8_model(tmp_path / 'detector.onnx', 4, 50, (32, 48))
    return load_model_info(path), output


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make the TensorRT backend module fail to import, whatever this machine has."""
    monkeypatch.setitem(sys.modules, TRT_MODULE, None)


def test_infer_returns_the_model_output_in_a_reused_buffer(model) -> None:
    info, planted = model
    backend = OnnxRuntimeBackend(info, {'intra_op_threads': 1})
    assert isinstance(backend, DetectorBackend) and backend.name == 'onnxruntime'
    backend.load()
    assert backend.loaded
    first = backend.infer(np.zeros(info.input_shape, np.float32))
    np.testing.assert_array_equal(first, planted)
    assert first.shape == info.output_shape and first.dtype == np.float32
    second = backend.infer(np.ones(info.input_shape, np.float32))
    assert second is first  # no per-frame output allocation
    # A non-contiguous view of the right shape is accepted too.
    wide = np.zeros((1, 3, 32, 96), np.float32)[:, :, :, ::2]
    np.testing.assert_array_equal(backend.infer(wide), planted)
    assert 'onnxruntime 1.' in backend.description
    assert 'CPUExecutionProvider' in backend.description and '1 threads' in backend.description
    backend.release()
    assert not backend.loaded


def test_pool_threads_get_the_last_cpus_and_leave_one_to_the_caller() -> None:
    assert pool_thread_cpus(2, [0, 1]) == [1]
    assert pool_thread_cpus(3, [4, 5, 6, 7]) == [7, 6]
    assert pool_thread_cpus(2, [0]) == []  # nothing left for the caller: nothing pinned
    assert pool_thread_cpus(4, [0, 1, 2]) == []
    assert pool_thread_cpus(1, [0, 1]) == [] and pool_thread_cpus(0, [0, 1]) == []
    assert affinity_entry([7, 6]) == '8;7'  # ONNX Runtime counts processors from 1


def test_the_caller_keeps_its_cpus_less_the_pool_threads() -> None:
    assert caller_cpus_during_run({0, 1}, [1]) == {0}
    assert caller_cpus_during_run({0, 1, 2, 3}, [3, 2]) == {0, 1}
    assert caller_cpus_during_run({0, 1}, []) is None  # no pool pinned: nothing to change
    assert caller_cpus_during_run({0}, [1]) is None  # already off the pool's CPU
    assert caller_cpus_during_run({1}, [1]) is None  # nothing would be left: left as it is


def _thread_cpus() -> dict[int, frozenset]:
    """Return each thread of this process with the CPUs it may run on."""
    return {int(tid): frozenset(os.sched_getaffinity(int(tid)))
            for tid in os.listdir('/proc/self/task')}


@pytest.mark.skipif(not hasattr(os, 'sched_getaffinity') or len(os.sched_getaffinity(0)) < 2,
                    reason='needs at least 2 CPUs this process may run on')
def test_pinned_pool_threads_run_on_their_own_cpu(model) -> None:
    # Issue 28: left to the scheduler, ONNX Runtime's pool thread woke on the caller's core
    # in the composed pipeline and the two took turns (inference 3.3 instead of 2.4 ms).
    info, planted = model
    before = _thread_cpus()
    backend = OnnxRuntimeBackend(info, {'intra_op_threads': 2, 'pin_threads': True})
    backend.load()
    try:
        expected = pool_thread_cpus(2, sorted(os.sched_getaffinity(0)))
        assert backend.pinned_cpus == expected and len(expected) == 1
        # The pool thread pins itself once it runs, which a loaded machine can delay.
        deadline = time.monotonic() + 5.0
        while True:
            new = {tid: cpus for tid, cpus in _thread_cpus().items() if tid not in before}
            if frozenset(expected) in new.values() or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert frozenset(expected) in new.values(), new  # ORT's pool thread, pinned
        # During each run the calling thread leaves the pool thread's CPU, then gets its own
        # back: the scheduler had put it there, and the two took turns (issue 30's split).
        own = os.sched_getaffinity(0)
        calls: list[set[int]] = []
        real_set = os.sched_setaffinity

        def recording_set(pid: int, cpus: set[int]) -> None:
            calls.append(set(cpus))
            real_set(pid, cpus)
        with mock.patch.object(os, 'sched_setaffinity', recording_set):
            np.testing.assert_array_equal(
                backend.infer(np.zeros(info.input_shape, np.float32)), planted)
        assert calls == [set(own) - set(expected), set(own)]
        assert os.sched_getaffinity(0) == own
        assert f'pool on CPU {expected[0]}' in backend.description
    finally:
        backend.release()
    unpinned = OnnxRuntimeBackend(info, {'intra_op_threads': 2})
    unpinned.load()
    assert unpinned.pinned_cpus == [] and 'pool on CPU' not in unpinned.description
    with mock.patch.object(os, 'sched_setaffinity', side_effect=AssertionError('moved')):
        unpinned.infer(np.zeros(info.input_shape, np.float32))  # the caller stays put
    unpinned.release()


@pytest.mark.skipif(not hasattr(os, 'sched_getaffinity') or len(os.sched_getaffinity(0)) < 2 or
                    not hasattr(os, 'SCHED_IDLE'),
                    reason='needs Linux and at least 2 CPUs this process may run on')
def test_kept_awake_pool_cpus_spin_from_a_frame_until_its_run_ends(model) -> None:
    # Issue 28: the pool thread's CPU, idle since the last frame, woke late for each run.
    info, planted = model
    backend = OnnxRuntimeBackend(info, {'intra_op_threads': 2, 'pin_threads': True,
                                        'keep_awake': True, 'keep_awake_max_us': 20000})
    backend.load()
    try:
        keeper = backend.keeper
        assert keeper is not None and keeper.running and keeper.cpus == backend.pinned_cpus
        assert backend.keep_awake_note == '' and 'kept awake' in backend.description
        assert keeper in KEEPERS
        KEEPERS.frame_coming()  # a frame entered the process (preprocessing's first line)
        assert keeper.armed
        np.testing.assert_array_equal(backend.infer(np.zeros(info.input_shape, np.float32)),
                                      planted)
        assert not keeper.armed  # its inference ended: the helpers sleep again
        helpers = list(keeper._helpers)
    finally:
        backend.release()
    assert backend.keeper is None and keeper not in KEEPERS
    assert all(helper.poll() is not None for helper in helpers)
    # Without pinned pool threads there is no CPU to keep awake, and the note says why.
    unpinned = OnnxRuntimeBackend(info, {'intra_op_threads': 2, 'keep_awake': True})
    unpinned.load()
    assert unpinned.keeper is None and 'not pinned' in unpinned.keep_awake_note
    unpinned.release()
    for bad in (0, 100001, -5, True):
        with pytest.raises(BackendError, match='keep_awake_max_us'):
            OnnxRuntimeBackend(info, {'keep_awake_max_us': bad})


def test_spinning_entries_spin_within_a_run_and_stop_as_it_returns() -> None:
    # Issue 28: a pool thread asleep between operators is woken once per operator, and after
    # the camera's idle period each wake is slow; spinning between runs too burns a core.
    assert spinning_entries(False, True, 250) == {'session.intra_op.allow_spinning': '1',
                                                  'session.inter_op.allow_spinning': '0',
                                                  'session.force_spinning_stop': '1',
                                                  'session.intra_op.spin_duration_us': '250'}
    assert spinning_entries(False, False) == {'session.intra_op.allow_spinning': '0',
                                              'session.inter_op.allow_spinning': '0'}
    for within in (False, True):  # ONNX Runtime's default: spin between runs too
        assert spinning_entries(True, within) == {'session.intra_op.allow_spinning': '1',
                                                  'session.inter_op.allow_spinning': '1'}


def test_session_is_created_with_the_spinning_asked_for(model) -> None:
    info, planted = model
    for bad in (-1, 1.5, True):
        with pytest.raises(BackendError, match='spin_duration_us is .*expected an int >= 0'):
            OnnxRuntimeBackend(info, {'spin_duration_us': bad})
    for options, words in (({'spin_within_run': True}, 'spinning within runs, 100 us'),
                           ({'spin_within_run': True, 'spin_duration_us': 40},
                            'spinning within runs, 40 us'),
                           ({'allow_spinning': True}, 'spinning'), ({}, '')):
        backend = OnnxRuntimeBackend(info, {'intra_op_threads': 2, **options})
        backend.load()
        try:
            session_options = backend._session.get_session_options()
            expected = spinning_entries(bool(options.get('allow_spinning')),
                                        bool(options.get('spin_within_run')),
                                        int(options.get('spin_duration_us', 100)))
            for key, value in expected.items():
                assert session_options.get_session_config_entry(key) == value, (options, key)
            np.testing.assert_array_equal(backend.infer(np.zeros(info.input_shape, np.float32)),
                                          planted)
            assert (f'({words})' in backend.description) == bool(words), backend.description
        finally:
            backend.release()


def test_infer_rejects_wrong_shape_or_dtype(model) -> None:
    info, _ = model
    backend = OnnxRuntimeBackend(info, {})
    backend.load()
    with pytest.raises(ValueError, match=r'expects a tensor of shape \[1, 3, 32, 48\] float32, '
                                         r'got \[1, 3, 48, 32\] float32'):
        backend.infer(np.zeros((1, 3, 48, 32), np.float32))
    with pytest.raises(ValueError, match='got .* float64'):
        backend.infer(np.zeros(info.input_shape, np.float64))
    backend.release()


def test_release_then_reload(model) -> None:
    info, planted = model
    backend = OnnxRuntimeBackend(info, {})
    backend.load()
    backend.release()
    with pytest.raises(BackendError, match='not loaded'):
        backend.infer(np.zeros(info.input_shape, np.float32))
    backend.load()
    np.testing.assert_array_equal(backend.infer(np.zeros(info.input_shape, np.float32)),
                                  planted)


def test_bad_options(model) -> None:
    info, _ = model
    with pytest.raises(BackendError, match='intra_op_threads'):
        OnnxRuntimeBackend(info, {'intra_op_threads': -1})
    backend = OnnxRuntimeBackend(info, {'providers': ['NoSuchExecutionProvider']})
    with pytest.raises(BackendError, match='NoSuchExecutionProvider.* not available'):
        backend.load()
    # Options meant for other backends are ignored.
    OnnxRuntimeBackend(info, {'workspace_mb': 256, 'fp16': True}).load()


def test_load_errors_name_the_file(model, tmp_path: Path) -> None:
    info, _ = model
    corrupt = tmp_path / 'corrupt.onnx'
    corrupt.write_bytes(b'\x08\x09garbage' * 10)
    with pytest.raises(BackendError, match=f'cannot load model {corrupt}'):
        OnnxRuntimeBackend(dataclasses.replace(info, path=str(corrupt),
                                               data=corrupt.read_bytes()), {}).load()
    with pytest.raises(BackendError, match='file not found'):  # no bytes: the path is read
        OnnxRuntimeBackend(dataclasses.replace(info, path=str(tmp_path / 'x.onnx'), data=b''),
                           {}).load()
    wrong = dataclasses.replace(info, output_shape=(1, 8, 49))
    with pytest.raises(BackendError, match=r'has shape \[1, 8, 50\]; model info expects'):
        OnnxRuntimeBackend(wrong, {}).load()
    renamed = dataclasses.replace(info, input_name='input')
    with pytest.raises(BackendError, match="expects input 'input'"):
        OnnxRuntimeBackend(renamed, {}).load()


def test_create_backend(model, no_tensorrt) -> None:
    info, _ = model
    assert BACKENDS == ('onnxruntime', 'tensorrt')
    assert isinstance(create_backend('onnxruntime', info, {}), OnnxRuntimeBackend)
    with pytest.raises(BackendError, match='unknown backend .*openvino'):
        create_backend('openvino', info, {})
    with pytest.raises(BackendError, match='TensorRT backend cannot be imported'):
        create_backend('tensorrt', info, {})


def test_preferred_backend_that_works_has_no_reason(model) -> None:
    info, _ = model
    backend, reason = load_with_fallback('onnxruntime', info, {})
    assert isinstance(backend, OnnxRuntimeBackend) and backend.loaded
    assert reason is None


def test_tensorrt_unavailable_falls_back_with_reason(model, no_tensorrt) -> None:
    info, planted = model
    backend, reason = load_with_fallback('tensorrt', info, {'intra_op_threads': 1})
    assert isinstance(backend, OnnxRuntimeBackend) and backend.loaded
    assert reason is not None and 'TensorRT' in reason
    np.testing.assert_array_equal(backend.infer(np.zeros(info.input_shape, np.float32)),
                                  planted)


@pytest.mark.skipif(importlib.util.find_spec('tensorrt') is not None,
                    reason='TensorRT is installed here; this checks a machine without it')
def test_tensorrt_on_this_machine_falls_back(model) -> None:
    info, _ = model
    backend, reason = load_with_fallback('tensorrt', info, {})
    assert backend.name == 'onnxruntime'
    assert 'TensorRT' in reason


def test_preferred_that_fails_at_load_is_released(model, monkeypatch) -> None:
    info, _ = model
    released = []

    def broken_load(self) -> None:
        raise RuntimeError('engine build failed')

    monkeypatch.setattr(OnnxRuntimeBackend, 'load', broken_load)
    monkeypatch.setattr(OnnxRuntimeBackend, 'release', lambda self: released.append(self))
    with pytest.raises(BackendError, match='no fallback backend'):
        load_with_fallback('onnxruntime', info, {})
    assert len(released) == 1


def test_both_failing_raises_with_both_reasons(model, no_tensorrt, tmp_path: Path) -> None:
    info, _ = model
    broken = tmp_path / 'broken.onnx'
    broken.write_bytes(b'not a model')
    broken_info = dataclasses.replace(info, path=str(broken), data=broken.read_bytes())
    with pytest.raises(BackendError) as caught:
        load_with_fallback('tensorrt', broken_info, {})
    message = str(caught.value)
    assert 'TensorRT backend unavailable' in message
    assert f'ONNX Runtime backend unavailable: onnxruntime cannot load model {broken}' in message


class _FailsWhileRunning(OnnxRuntimeBackend):
    """A real ONNX Runtime backend that reports itself as TensorRT and fails on its third run."""

    name = 'tensorrt'

    def __init__(self, model, options) -> None:
        super().__init__(model, options)
        self.runs = 0
        self.released = False

    def infer(self, tensor):
        self.runs += 1
        if self.runs >= 3:
            raise BackendError('CUDA error: an illegal memory access was encountered')
        return super().infer(tensor)

    def release(self) -> None:
        self.released = True
        super().release()


def test_fallback_backend_switches_once_at_load_and_reports(model, no_tensorrt) -> None:
    info, planted = model
    reasons = []
    backend = FallbackBackend('tensorrt', info, {}, 'onnxruntime', reasons.append)
    backend.load()
    assert backend.name == 'onnxruntime' and backend.on_fallback_backend
    assert len(reasons) == 1 and 'TensorRT' in reasons[0] == backend.fallback_reason
    np.testing.assert_array_equal(backend.infer(np.zeros(info.input_shape, np.float32)),
                                  planted)
    backend.release()
    with pytest.raises(BackendError, match='no backend loaded'):
        backend.infer(np.zeros(info.input_shape, np.float32))


def test_fallback_backend_switches_mid_run_and_keeps_the_frame(model, monkeypatch) -> None:
    info, planted = model
    created = []

    def create(name, model_info, options):
        backend = (_FailsWhileRunning if name == 'tensorrt' else OnnxRuntimeBackend)(
            model_info, options)
        created.append(backend)
        return backend

    monkeypatch.setattr('edge_infer_ros.inference.backends.factory.create_backend', create)
    reasons = []
    backend = FallbackBackend('tensorrt', info, {}, 'onnxruntime', reasons.append)
    backend.load()
    assert backend.name == 'tensorrt' and not backend.on_fallback_backend and not reasons
    tensor = np.zeros(info.input_shape, np.float32)
    outputs = [backend.infer(tensor).copy() for _ in range(4)]  # the third run fails
    for output in outputs:
        np.testing.assert_array_equal(output, planted)
    failed, replacement = created
    assert failed.released and backend.name == 'onnxruntime'
    assert len(reasons) == 1 and 'illegal memory access' in reasons[0]
    assert 'failed while running' in backend.fallback_reason


def test_fallback_none_lets_errors_through(model, no_tensorrt) -> None:
    info, _ = model
    with pytest.raises(BackendError, match='TensorRT'):
        FallbackBackend('tensorrt', info, {}, 'none').load()


def test_a_pinned_model_swapped_during_configures_is_never_loaded(tmp_path: Path) -> None:
    # Issue 29: the file was hashed, then read again by path to load: a file swapped in
    # between ran while the node reported the pinned sha256. Now the hashed bytes are loaded.
    good, planted = make_yolov8_model(tmp_path / 'good.onnx', 4, 50, (32, 32))
    sick = make_constant_output_model(tmp_path / 'sick.onnx',
                                      np.full(planted.shape, np.nan, np.float32), (32, 32))
    pinned = hashlib.sha256(good.read_bytes()).hexdigest()
    path = tmp_path / 'detector.onnx'
    os.link(good, path)
    stop = threading.Event()

    def swap() -> None:
        for index in range(10 ** 9):
            if stop.is_set():
                return
            spare = tmp_path / 'spare.onnx'
            os.link(sick if index % 2 == 0 else good, spare)
            os.replace(spare, path)  # atomic, as an attacker or a deploy script would
            stop.wait(0.001)  # a swap about every millisecond: each file is there a while

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    loaded = refused = 0
    try:
        while loaded < 20 and loaded + refused < 2000:
            try:
                info = load_model_info(path, expected_sha256=pinned)
            except ModelError:
                refused += 1  # the sick file was there when hashed: refused, as it should be
                continue
            backend = OnnxRuntimeBackend(info, {'intra_op_threads': 1})
            backend.load()
            output = backend.infer(np.zeros(info.input_shape, np.float32))
            assert info.sha256 == pinned
            np.testing.assert_array_equal(output, planted)  # never the sick model's NaN
            backend.release()
            loaded += 1
    finally:
        stop.set()
        swapper.join(5.0)
    assert loaded == 20, (loaded, refused)

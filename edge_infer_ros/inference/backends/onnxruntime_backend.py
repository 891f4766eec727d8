"""
ONNX Runtime backend: the CPU engine, and the fallback whenever TensorRT cannot run.

The session is created once in load(); infer() binds the caller's input array and runs into a
preallocated output buffer with IOBinding, so a frame allocates nothing for the output.
Measured on this project's 2-core CPU, ORT 1.32, per-frame medians of 7-9 interleaved rounds
(another job was loading the CPU, so absolute figures are high): overhead-only models with a
[1, 8, 2100] output take 44-45 us with ``session.run`` vs 32-37 us with IOBinding, with a
[1, 84, 8400] output 450-497 vs 363-437 us, and with a 320x320 input 152 vs 118 us. IOBinding
is faster, so it is used. Copying into a preallocated, pre-bound input instead of binding the
caller's array costs more than it saves (+50 us per 320x320 frame).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import AbstractSet, Any, Mapping, Optional, Sequence

from edge_infer_ros.core.awake import AwakeError, CpuKeeper, KEEPERS, MAX_SPIN_NS
from edge_infer_ros.inference.backends.base import BackendError, DetectorBackend
from edge_infer_ros.inference.model_info import ModelInfo
import numpy as np

#: graph_optimization option values
DEFAULT_PROVIDERS = ('CPUExecutionProvider',)
#: How long a pool thread spinning within a run waits for work before it sleeps: longer than
#: the gaps between operators, shorter than the serial stretches in which another thread of
#: the process should get the core (measured: docs/benchmarks.md, issue 28).
DEFAULT_SPIN_DURATION_US = 100
#: The longest a frame keeps the pool's CPUs awake before its inference (keep_awake): more than
#: preprocessing and the hops take, a bound for a frame refused on the way.
DEFAULT_KEEP_AWAKE_MAX_US = 5000


def pool_thread_cpus(threads: int, cpus: Sequence[int]) -> list[int]:
    """
    Choose a CPU for each of ONNX Runtime's pool threads: the last ones, one each ([] if too few).

    The calling thread is one of the ``threads`` and stays free to move; the pool threads
    (``threads - 1``) get a CPU each from the end of ``cpus``, so that the scheduler cannot
    put a pool thread on the caller's core, where the two would take turns instead of
    running together. With no CPU left for the caller nothing is pinned.
    """
    pool = threads - 1
    ordered = sorted(set(cpus))
    if pool < 1 or pool >= len(ordered):
        return []
    return ordered[::-1][:pool]


def caller_cpus_during_run(own: AbstractSet[int], pool: Sequence[int]) -> Optional[set[int]]:
    """
    Return the CPUs the calling thread keeps during a run: its own less the pool threads'.

    None when there is nothing to change (no pool CPU among its own) or nothing would be left.
    Pinning the pool threads alone does not stop the scheduler from waking the caller on a
    pool thread's CPU; with the pool spinning within a run the two then take turns.
    """
    during = set(own).difference(pool)
    return during if during and len(during) < len(own) else None


def affinity_entry(cpus: Sequence[int]) -> str:
    """Spell pool-thread CPUs as ``session.intra_op_thread_affinities`` does (1-based ids)."""
    return ';'.join(str(cpu + 1) for cpu in cpus)


def spinning_entries(allow_spinning: bool, spin_within_run: bool,
                     spin_duration_us: int = DEFAULT_SPIN_DURATION_US) -> dict[str, str]:
    """
    Return ONNX Runtime's session config entries for how pool threads wait for work.

    ``allow_spinning``: spin between runs too (ONNX Runtime's default). ``spin_within_run``:
    spin between the operators of a run, at most ``spin_duration_us`` without work, and stop
    as the run returns (``session.force_spinning_stop``). Neither: sleep whenever idle.
    """
    within = allow_spinning or spin_within_run
    entries = {'session.intra_op.allow_spinning': '1' if within else '0',
               'session.inter_op.allow_spinning': '1' if allow_spinning else '0'}
    if within and not allow_spinning:
        entries['session.force_spinning_stop'] = '1'
        entries['session.intra_op.spin_duration_us'] = str(spin_duration_us)
    return entries


class OnnxRuntimeBackend(DetectorBackend):
    """
    Run a detector with ONNX Runtime; options say threads and providers.

    Options (others are ignored, so one options mapping can serve every backend):
    ``intra_op_threads`` (int, 0 = ORT default), ``providers`` (list,
    default ['CPUExecutionProvider']), ``allow_spinning`` (bool, default False: ORT's worker
    threads would otherwise spin-wait after each run and take a core from the other stages,
    which on a 2-core robot costs the rest of the pipeline more than it saves inference),
    ``pin_threads`` (bool, default False: each pool thread on a CPU of its own, see
    :func:`pool_thread_cpus`, and the calling thread off those CPUs while a run lasts, see
    :func:`caller_cpus_during_run`; left to the scheduler, a pool thread woken after an idle
    period can land on the caller's core, or the caller on the pool thread's, and the two then
    take turns), ``spin_within_run`` (bool,
    default False: pool threads spin-wait between the operators of one run, for at most
    ``spin_duration_us`` (int, default 100) without work, and stop when it returns; a pool
    thread that sleeps between operators is woken once per operator, and after the camera's
    idle period each wake is slow, while spinning after the run as well would burn a core
    between frames), ``keep_awake`` (bool, default False: with pinned pool threads, keep
    their CPUs out of idle from a frame's arrival in this process until its inference ends,
    see :mod:`edge_infer_ros.core.awake`; a CPU that idled since the last frame wakes the
    pool thread late), ``keep_awake_max_us`` (int, default 5000: the longest such wait).
    """

    name = 'onnxruntime'

    def __init__(self, model: ModelInfo, options: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(model, options or {})
        self.intra_op_threads = self._count_option('intra_op_threads', 0)  # 0: ORT's default
        self.allow_spinning = bool(self.options.get('allow_spinning', False))
        self.pin_threads = bool(self.options.get('pin_threads', False))
        self.spin_within_run = bool(self.options.get('spin_within_run', False))
        self.spin_duration_us = self._count_option('spin_duration_us', DEFAULT_SPIN_DURATION_US)
        self.pinned_cpus: list[int] = []  # the pool threads' CPUs, after load()
        self.keep_awake = bool(self.options.get('keep_awake', False))
        self.keep_awake_max_us = self._count_option('keep_awake_max_us',
                                                    DEFAULT_KEEP_AWAKE_MAX_US)
        if not 0 < self.keep_awake_max_us * 1000 <= MAX_SPIN_NS:
            raise BackendError(f'onnxruntime option keep_awake_max_us is '
                               f'{self.keep_awake_max_us}: expected 1 to {MAX_SPIN_NS // 1000}')
        #: keeps the pool's CPUs awake while a frame is on its way (None: off, see keep_awake_note)
        self.keeper: Optional[CpuKeeper] = None
        self.keep_awake_note = ''  # why the CPUs are not kept awake ('' when they are)
        providers = self.options.get('providers') or DEFAULT_PROVIDERS
        if isinstance(providers, str):
            providers = [providers]
        self.providers = [str(p) for p in providers]
        self._session: Any = None
        self._binding: Any = None
        self._output: Optional[np.ndarray] = None
        self._version = ''
        self._active: list[str] = []

    def _count_option(self, key: str, default: int) -> int:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BackendError(f'onnxruntime option {key} is {value!r}: expected an int >= 0')
        return value

    def load(self) -> None:
        """Create the session, check it against the model info, preallocate and warm up."""
        self.release()
        path = self.model.path
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError(f'onnxruntime cannot be imported: {e}') from e
        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendError(f'onnxruntime providers {missing} are not available for '
                               f'{path}; available: {ort.get_available_providers()}')
        source: Any = self.model.data  # the bytes that were hashed, not the file again
        if not source:
            if not Path(path).is_file():
                raise BackendError(f'onnxruntime cannot load model {path}: file not found')
            source = path
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.intra_op_threads
        for key, value in spinning_entries(self.allow_spinning, self.spin_within_run,
                                           self.spin_duration_us).items():
            so.add_session_config_entry(key, value)
        self.pinned_cpus = []
        if self.pin_threads and hasattr(os, 'sched_getaffinity'):
            self.pinned_cpus = pool_thread_cpus(self.intra_op_threads,
                                                sorted(os.sched_getaffinity(0)))
            if self.pinned_cpus:
                so.add_session_config_entry('session.intra_op_thread_affinities',
                                            affinity_entry(self.pinned_cpus))
        try:
            session = ort.InferenceSession(source, sess_options=so, providers=self.providers)
        except Exception as e:  # noqa: B902 - ORT raises its own Fail/InvalidGraph/... types
            raise BackendError(f'onnxruntime cannot load model {path}: {e}') from e
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        if self.model.input_name not in inputs or self.model.output_name not in outputs:
            raise BackendError(f'onnxruntime session for {path} has inputs {list(inputs)} and '
                               f'outputs {list(outputs)}; model info expects input '
                               f'{self.model.input_name!r}, output {self.model.output_name!r}')
        output = np.empty(self.model.output_shape, self.model.output_dtype)
        binding = session.io_binding()
        binding.bind_ortvalue_output(self.model.output_name,
                                     ort.OrtValue.ortvalue_from_numpy(output))
        self._session, self._binding, self._output = session, binding, output
        self._version = ort.__version__
        self._active = list(session.get_providers())
        # Warm-up run: first-run allocations happen now, and a model whose real output shape
        # differs from the model info (e.g. a derived dynamic shape) fails here, not per frame.
        warm = np.zeros(self.model.input_shape, self.model.input_dtype)
        try:
            got = session.run([self.model.output_name], {self.model.input_name: warm})[0]
        except Exception as e:  # noqa: B902 - any failure of the first run means unusable
            self.release()
            raise BackendError(f'onnxruntime failed its first run of {path}: {e}') from e
        if got.shape != output.shape:
            self.release()
            raise BackendError(f'onnxruntime output of {path} has shape {list(got.shape)}; '
                               f'model info expects {list(self.model.output_shape)}')
        self._start_keeper()

    def _start_keeper(self) -> None:
        """Keep the pool's CPUs awake for frames on their way (keep_awake), or say why not."""
        self.keep_awake_note = ''
        if not self.keep_awake:
            return
        if not self.pinned_cpus:
            self.keep_awake_note = 'off: the pool threads are not pinned (pin_threads)'
            return
        keeper = CpuKeeper(self.pinned_cpus, self.keep_awake_max_us * 1000)
        try:
            keeper.start()
        except AwakeError as e:
            self.keep_awake_note = f'off: {e}'
            return
        self.keeper = keeper
        KEEPERS.add(keeper)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """
        Run one (1, 3, H, W) tensor; return the output buffer (reused by the next call).

        Raises ValueError for a wrong shape or dtype, BackendError if not loaded or if the run
        fails.
        """
        if self._session is None:
            raise BackendError(f'onnxruntime backend for {self.model.path} is not loaded')
        self.check_input(tensor)
        if not tensor.flags.c_contiguous:
            tensor = np.ascontiguousarray(tensor)
        self._binding.bind_cpu_input(self.model.input_name, tensor)
        # The caller's thread (pid 0 is the calling thread) leaves the pool's CPUs for the run.
        own: AbstractSet[int] = os.sched_getaffinity(0) if self.pinned_cpus else set()
        during = caller_cpus_during_run(own, self.pinned_cpus)
        if during:
            os.sched_setaffinity(0, during)
        keeper = self.keeper
        if keeper is not None:
            keeper.before_run()  # armed already when the frame came through this process
        try:
            self._session.run_with_iobinding(self._binding)
        except Exception as e:  # noqa: B902 - surface any engine failure as BackendError
            raise BackendError(f'onnxruntime run of {self.model.path} failed: {e}') from e
        finally:
            if keeper is not None:
                keeper.disarm()
            if during:
                os.sched_setaffinity(0, own)
        assert self._output is not None  # bound at load
        return self._output

    def release(self) -> None:
        """Drop the session, buffers and CPU keeper; load() may be called again."""
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            KEEPERS.remove(keeper)
            keeper.close()
        self._binding = None
        self._session = None
        self._output = None

    @property
    def loaded(self) -> bool:
        """Tell whether load() succeeded and release() has not been called since."""
        return self._session is not None

    @property
    def description(self) -> str:
        """Describe version, providers and threads, e.g. for the node's start-up log."""
        providers = ', '.join(self._active or self.providers)
        threads = (f'{self.intra_op_threads} threads' if self.intra_op_threads
                   else 'default threads')
        notes = []
        if self.pinned_cpus:
            notes.append(f"pool on CPU {', '.join(map(str, self.pinned_cpus))}")
        if self.keeper is not None:
            notes.append('kept awake for frames on their way')
        if self.allow_spinning:
            notes.append('spinning')
        elif self.spin_within_run:
            notes.append(f'spinning within runs, {self.spin_duration_us} us')
        if notes:
            threads += f" ({', '.join(notes)})"
        version = self._version or 'not loaded'
        return f'onnxruntime {version} {providers}, {threads}'

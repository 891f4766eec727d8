"""
TensorRT backend: the GPU engine of the detector, built from the ONNX model and cached on disk.

Over 400 lines as one concern: engine build, cache, CUDA context and buffers of one backend;
its ROS-free cache key lives apart in engine_cache.py.

Why it looks like this:

* ``tensorrt`` and ``pycuda`` are imported inside :meth:`TensorRTBackend.load`, never at module
  import, so this module imports on any machine and a missing package, driver or GPU becomes a
  :class:`BackendError` that says which, and the factory falls back to ONNX Runtime.
* Building an engine takes seconds to minutes, so the serialized plan is cached with
  :class:`EngineCache`, keyed by model sha256, TensorRT version, GPU name and compute
  capability, precision, input shape and workspace; a stale or foreign plan is never loaded.
* Only the TensorRT 10 tensor API is used (``num_io_tensors``, ``get_tensor_name``,
  ``get_tensor_mode``, ``set_tensor_address``, ``execute_async_v3``): the binding API was
  removed in TensorRT 10.
* Page-locked host buffers and device buffers are allocated once in load(); a frame is one
  ``np.copyto`` into pinned memory, an async upload, ``execute_async_v3``, an async download
  and ONE ``stream.synchronize()``.
* The detector calls infer() from a worker thread, not the thread that called load(). All CUDA
  work therefore runs with the device's *primary* context (the one TensorRT's CUDA runtime
  uses too) pushed on the calling thread and popped afterwards, so load(), infer() and
  release() may each run on any thread. They are serialised by a lock.

TensorRT 11 removed the weak-typing builder flags (``BuilderFlag.FP16``/``INT8``) and
``platform_has_fast_fp16``; on such a version the engine is built strongly typed in the
ONNX graph's own types, and a note says so (feature-detected; only TensorRT 10 is targeted).

Not executed in the task that wrote it (no GPU there): see docs/tensorrt.md for what was
checked and how to run the GPU tests.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Mapping, Optional

from edge_infer_ros.inference.backends.base import BackendError, DetectorBackend
from edge_infer_ros.inference.backends.engine_cache import EngineCache, EngineKey, PRECISIONS
from edge_infer_ros.inference.model_info import ModelInfo
import numpy as np

DEFAULT_PRECISION = 'fp16'
DEFAULT_WORKSPACE_MB = 1024
#: Oldest TensorRT major version with the tensor API and execute_async_v3 only.
MIN_TENSORRT_MAJOR = 10

_LOG = logging.getLogger('edge_infer_ros.tensorrt')


def _import_runtime() -> tuple[Any, Any]:
    """Import tensorrt and pycuda.driver, or raise BackendError naming what is missing."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendError(f'TensorRT Python package not installed ({e}): install TensorRT '
                           f'{MIN_TENSORRT_MAJOR} (e.g. pip install "tensorrt-cu12>=10,<11") '
                           'on a machine with an NVIDIA GPU') from e
    except Exception as e:  # noqa: B902 - e.g. OSError: libnvinfer cannot be loaded
        raise BackendError(f'TensorRT Python package cannot load its libraries: '
                           f'{type(e).__name__}: {e}') from e
    version = str(getattr(trt, '__version__', '0'))
    try:
        major = int(version.split('.')[0])
    except ValueError:
        major = 0
    if major < MIN_TENSORRT_MAJOR:
        raise BackendError(f'TensorRT {version} is installed; this backend needs TensorRT '
                           f'{MIN_TENSORRT_MAJOR} or newer (tensor API, execute_async_v3)')
    try:
        import pycuda.driver as cuda
    except ModuleNotFoundError as e:
        if (e.name or '').split('.')[0] == 'pycuda':
            raise BackendError(f'pycuda not installed ({e}): pip install pycuda (needs the '
                               'CUDA toolkit to build)') from e
        raise BackendError(f'pycuda cannot be imported: {e}') from e
    except ImportError as e:
        raise BackendError(f'pycuda cannot load the CUDA driver (libcuda) - no NVIDIA driver '
                           f'on this machine? {e}') from e
    except Exception as e:  # noqa: B902 - a broken pycuda build raises anything
        raise BackendError(f'pycuda cannot be imported: {type(e).__name__}: {e}') from e
    return trt, cuda


def _make_logger(trt: Any) -> Any:
    """Return a TensorRT logger that keeps recent errors (for BackendError) and logs warnings."""

    class _Logger(trt.ILogger):  # type: ignore[misc, unused-ignore]  # no TensorRT stubs

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            severities = trt.ILogger.Severity
            if severity in (severities.INTERNAL_ERROR, severities.ERROR):
                self.errors = (self.errors + [str(msg)])[-10:]
                _LOG.error('TensorRT: %s', msg)
            elif severity == severities.WARNING:
                _LOG.warning('TensorRT: %s', msg)

        def recent(self) -> str:
            return ('; TensorRT said: ' + ' | '.join(self.errors[-3:])) if self.errors else ''

    return _Logger()


class TensorRTBackend(DetectorBackend):
    """
    Run a detector with TensorRT on an NVIDIA GPU; the engine is built once and cached.

    Options (others are ignored): ``precision`` ('fp32', 'fp16', 'int8'; default 'fp16'),
    ``workspace_mb`` (builder workspace, default 1024), ``engine_cache_dir`` ('' = default
    cache directory), ``device`` (CUDA device index, default 0). After load():
    :attr:`engine_source` is 'built' or 'cache', :attr:`load_seconds` how long it took,
    :attr:`precision` the precision actually used and :attr:`notes` anything worth logging.
    """

    name = 'tensorrt'

    def __init__(self, model: ModelInfo, options: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(model, options or {})
        self.requested_precision = str(self.options.get('precision') or DEFAULT_PRECISION)
        self.precision = self.requested_precision
        self.engine_source: Optional[str] = None
        self.load_seconds = 0.0
        self.engine_path = ''
        self.notes: list[str] = []
        self.gpu_name = ''
        self.compute_capability = ''
        self.tensorrt_version = ''
        self._lock = threading.RLock()
        self._trt: Any = None
        self._cuda: Any = None
        self._cuda_ctx: Any = None
        self._logger: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._device_buffers: dict[str, Any] = {}
        self._host_in: Optional[np.ndarray] = None
        self._host_out: Optional[np.ndarray] = None
        self._dev_in: Any = None
        self._dev_out: Any = None

    # -- options -------------------------------------------------------------------------

    def _parse_options(self) -> tuple[str, int, int, EngineCache]:
        precision = self.requested_precision.lower()
        if precision not in PRECISIONS:
            raise BackendError(f'tensorrt option precision is {precision!r}: expected one of '
                               f'{PRECISIONS}')
        workspace = self.options.get('workspace_mb', DEFAULT_WORKSPACE_MB)
        if isinstance(workspace, bool) or not isinstance(workspace, int) or workspace < 1:
            raise BackendError(f'tensorrt option workspace_mb is {workspace!r}: expected an '
                               'int >= 1 (MiB)')
        device = self.options.get('device', 0)
        if isinstance(device, bool) or not isinstance(device, int) or device < 0:
            raise BackendError(f'tensorrt option device is {device!r}: expected a CUDA device '
                               'index >= 0')
        return precision, workspace, device, EngineCache(self.options.get('engine_cache_dir'))

    # -- load ----------------------------------------------------------------------------

    def load(self) -> None:
        """
        Build or load the engine and allocate every buffer once; raise BackendError if unusable.

        Calling load() on a loaded backend does nothing; after release() it loads again.
        """
        with self._lock:
            if self._context is not None:
                return
            start = time.perf_counter()
            self.notes = []
            self.engine_source = None
            precision, workspace_mb, device, cache = self._parse_options()
            self.precision = precision
            trt, cuda = _import_runtime()
            self._trt, self._cuda = trt, cuda
            self.tensorrt_version = str(trt.__version__)
            self._open_device(cuda, device)
            try:
                self._cuda_ctx.push()
            except Exception as e:  # noqa: B902 - pycuda raises its own error types
                self._release_locked()
                raise BackendError(f'cannot make CUDA device {device} current: {e}') from e
            try:
                self._logger = _make_logger(trt)
                self._runtime = trt.Runtime(self._logger)
                key = EngineKey(model_sha256=self.model.sha256,
                                tensorrt_version=self.tensorrt_version,
                                gpu_name=self.gpu_name,
                                compute_capability=self.compute_capability,
                                precision=precision, input_shape=self.model.input_shape,
                                workspace_mb=workspace_mb, model_name=self.model.path)
                plan: Optional[bytes] = None
                self._engine = self._engine_from_cache(cache, key)
                if self._engine is None:
                    plan = self._build(precision, workspace_mb)
                    self._engine = self._runtime.deserialize_cuda_engine(plan)
                    if self._engine is None:
                        raise BackendError('TensorRT cannot deserialize the engine it just '
                                           f'built for {self.model.path}{self._logger.recent()}')
                    self.engine_source = 'built'
                self._allocate()
                self._run_once()
                if plan is not None:
                    # Cached only once it has run: a plan that fails its first run is not kept.
                    self._store(cache, key, plan)
            except Exception as e:  # noqa: B902 - anything here leaves the backend unusable
                self._release_locked(pushed=True)
                if isinstance(e, BackendError):
                    raise
                raise BackendError(f'TensorRT cannot load {self.model.path}: '
                                   f'{type(e).__name__}: {e}') from e
            error = self._pop()
            if error is not None:
                self._release_locked()
                raise BackendError(f'cannot release the CUDA context after loading: '
                                   f'{type(error).__name__}: {error}') from error
            self.load_seconds = time.perf_counter() - start
            for note in self.notes:
                _LOG.info('tensorrt: %s', note)

    def _open_device(self, cuda: Any, device: int) -> None:
        """Initialise CUDA and retain the device's primary context (not pushed yet)."""
        try:
            cuda.init()
            count = cuda.Device.count()
        except Exception as e:  # noqa: B902 - pycuda.driver.Error and friends
            raise BackendError(f'no CUDA device: the CUDA driver failed to initialise: '
                               f'{type(e).__name__}: {e}') from e
        if count < 1:
            raise BackendError('no CUDA device: the CUDA driver sees 0 GPUs')
        if device >= count:
            raise BackendError(f'no CUDA device {device}: the driver sees {count} GPU(s) '
                               f'(indices 0..{count - 1}); set the device option')
        try:
            dev = cuda.Device(device)
            self.gpu_name = str(dev.name())
            major, minor = dev.compute_capability()
            self.compute_capability = f'{major}.{minor}'
            self._cuda_ctx = dev.retain_primary_context()
        except Exception as e:  # noqa: B902
            raise BackendError(f'no CUDA device: cannot open CUDA device {device}: '
                               f'{type(e).__name__}: {e}') from e

    def _engine_from_cache(self, cache: EngineCache, key: EngineKey) -> Any:
        """Return the deserialized cached engine for ``key``, or None (and note why)."""
        self.engine_path = str(cache.path_for(key))
        try:
            plan = cache.load(key)
        except OSError as e:
            self.notes.append(f'engine cache {cache.directory} unreadable: {e}')
            return None
        if plan is None:
            self.notes.append(f'building engine: {cache.last_reason}')
            return None
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            # Same key but TensorRT refuses it (e.g. a driver change): rebuild and replace.
            self.notes.append(f'cached engine {self.engine_path} refused by TensorRT'
                              f'{self._logger.recent()}; rebuilding')
            cache.remove(key)
            return None
        info = cache.last_info
        if info.get('precision'):
            self.precision = str(info['precision'])
        self.notes.extend(str(n) for n in info.get('notes', ()))
        self.engine_source = 'cache'
        return engine

    def _store(self, cache: EngineCache, key: EngineKey, plan: bytes) -> None:
        try:
            self.engine_path = str(cache.store(
                key, plan, info={'precision': self.precision, 'notes': list(self.notes)}))
        except OSError as e:
            # The engine works; only the next start will be slow again.
            self.notes.append(f'engine not cached (cannot write {cache.directory}: {e})')

    def _build(self, precision: str, workspace_mb: int) -> bytes:
        """Parse the ONNX model and build a serialized engine (TensorRT 10 API)."""
        trt = self._trt
        logger = self._logger
        path = self.model.path
        builder = trt.Builder(logger)
        # Explicit batch is the only mode (and the default) in TensorRT 10: flags 0.
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        # The bytes that were hashed, not the file again (it may have been swapped since).
        parsed = (parser.parse(self.model.data, str(path)) if self.model.data else
                  parser.parse_from_file(str(path)))
        if not parsed:
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise BackendError(f'TensorRT cannot parse {path}: ' +
                               ('; '.join(errors[:5]) or 'no error reported'))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        self.precision = self._set_precision(builder, network, config, precision)
        self._add_profile_if_dynamic(builder, network, config)
        started = time.perf_counter()
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError(f'TensorRT failed to build an engine for {path} '
                               f'({self.precision}, workspace {workspace_mb} MiB)'
                               f'{logger.recent()}')
        self.notes.append(f'engine built in {time.perf_counter() - started:.1f} s')
        return bytes(plan)

    def _set_precision(self, builder: Any, network: Any, config: Any, precision: str) -> str:
        """Set builder flags for ``precision``; return the precision actually used."""
        trt = self._trt
        flags = trt.BuilderFlag
        weak_typing = hasattr(flags, 'FP16') and hasattr(builder, 'platform_has_fast_fp16')
        if precision == 'int8' and not self._has_qdq(network):
            raise BackendError(f'precision int8 needs a model quantized with Q/DQ nodes '
                               f'(explicit quantization); {self.model.path} has none and this '
                               'backend does not calibrate: use fp16 or a Q/DQ model')
        if precision == 'fp32':
            return 'fp32'
        if not weak_typing:
            self.notes.append(f'TensorRT {self.tensorrt_version} has no {precision} builder '
                              'flag (weak typing removed): the engine runs in the types of '
                              'the ONNX graph; convert the model (e.g. ModelOpt AutoCast or a '
                              'Q/DQ export) for reduced precision')
            return 'int8' if precision == 'int8' else 'fp32'
        fast_fp16 = bool(builder.platform_has_fast_fp16)
        if precision == 'int8':
            if not builder.platform_has_fast_int8:
                raise BackendError(f'precision int8 requested but GPU {self.gpu_name} has no '
                                   'fast int8')
            config.set_flag(flags.INT8)
            if fast_fp16:
                # Layers outside the Q/DQ regions may then run in fp16 instead of fp32.
                config.set_flag(flags.FP16)
            return 'int8'
        if not fast_fp16:
            self.notes.append(f'GPU {self.gpu_name} (sm {self.compute_capability}) has no fast '
                              'fp16: building fp32 instead')
            return 'fp32'
        config.set_flag(flags.FP16)
        return 'fp16'

    def _has_qdq(self, network: Any) -> bool:
        trt = self._trt
        qdq = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
        return any(network.get_layer(i).type in qdq for i in range(network.num_layers))

    def _add_profile_if_dynamic(self, builder: Any, network: Any, config: Any) -> None:
        """Pin dynamic input dims (e.g. a dynamic batch) to the model's input shape."""
        dynamic = []
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if any(int(d) < 0 for d in tensor.shape):
                dynamic.append(tensor)
        if not dynamic:
            return
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            if tensor.name != self.model.input_name:
                raise BackendError(f'{self.model.path} has a dynamic input {tensor.name!r} '
                                   'other than the image input; not supported')
            shape = tuple(self.model.input_shape)
            profile.set_shape(tensor.name, shape, shape, shape)
        config.add_optimization_profile(profile)
        self.notes.append(f'dynamic input dims fixed to {list(self.model.input_shape)}')

    def _allocate(self) -> None:
        """Discover I/O tensors (tensor API) and allocate pinned + device buffers once."""
        trt, cuda, engine = self._trt, self._cuda, self._engine
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(name)
            else:
                outputs.append(name)
        path = self.model.path
        if inputs != [self.model.input_name] or self.model.output_name not in outputs:
            raise BackendError(f'TensorRT engine for {path} has inputs {inputs} and outputs '
                               f'{outputs}; model info expects input {self.model.input_name!r} '
                               f'and output {self.model.output_name!r}')
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(f'TensorRT cannot create an execution context for {path} (out '
                               f'of GPU memory?){self._logger.recent()}')
        self._context = context
        name_in = self.model.input_name
        engine_shape = tuple(int(d) for d in engine.get_tensor_shape(name_in))
        if any(d < 0 for d in engine_shape):
            if not context.set_input_shape(name_in, tuple(self.model.input_shape)):
                raise BackendError(f'TensorRT refuses input shape {list(self.model.input_shape)}'
                                   f' for {path}{self._logger.recent()}')
        elif engine_shape != tuple(self.model.input_shape):
            raise BackendError(f'TensorRT engine input {name_in!r} has shape '
                               f'{list(engine_shape)}; model info expects '
                               f'{list(self.model.input_shape)}')
        for name in inputs + outputs:
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f'TensorRT tensor {name!r} of {path} has unresolved shape '
                                   f'{list(shape)}')
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            nbytes = max(1, math.prod(shape) * dtype.itemsize)
            device_buffer = cuda.mem_alloc(nbytes)
            self._device_buffers[name] = device_buffer
            context.set_tensor_address(name, int(device_buffer))
            if name == name_in:
                self._host_in = cuda.pagelocked_empty(shape, dtype)
                self._dev_in = device_buffer
            elif name == self.model.output_name:
                if shape != tuple(self.model.output_shape):
                    raise BackendError(f'TensorRT output {name!r} of {path} has shape '
                                       f'{list(shape)}; model info expects '
                                       f'{list(self.model.output_shape)}')
                self._host_out = cuda.pagelocked_empty(shape, dtype)
                self._dev_out = device_buffer
        self._stream = cuda.Stream()

    def _run_once(self) -> None:
        """Warm-up run: lazy initialisation happens now and a broken engine fails at load."""
        assert self._host_in is not None  # allocated by _allocate
        self._host_in.fill(0)
        self._enqueue()

    def _enqueue(self) -> None:
        """Upload the pinned input, run, download the output, wait once (context current)."""
        cuda = self._cuda
        cuda.memcpy_htod_async(self._dev_in, self._host_in, self._stream)
        self._execute()
        cuda.memcpy_dtoh_async(self._host_out, self._dev_out, self._stream)
        self._stream.synchronize()

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.handle):
            raise BackendError(f'TensorRT execute_async_v3 failed for {self.model.path}'
                               f'{self._logger.recent()}')

    # -- per frame -----------------------------------------------------------------------

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """
        Run one (1, 3, H, W) tensor; return the pinned output buffer (reused by the next call).

        Raises ValueError for a wrong shape or dtype, BackendError if not loaded or if any CUDA
        or TensorRT call fails (the detector then falls back to ONNX Runtime).
        """
        self.check_input(tensor)
        with self._lock:
            if self._context is None:
                raise BackendError(f'tensorrt backend for {self.model.path} is not loaded')
            self._push()
            error: Optional[BaseException] = None
            try:
                assert self._host_in is not None  # loaded (checked above)
                np.copyto(self._host_in, tensor, casting='same_kind')
                self._enqueue()
            except Exception as e:  # noqa: B902 - any CUDA/TensorRT failure -> BackendError
                error = e
            error = self._pop(error)
            if error is not None:
                if isinstance(error, BackendError):
                    raise error
                raise BackendError(f'TensorRT inference failed for {self.model.path}: '
                                   f'{type(error).__name__}: {error}') from error
            assert self._host_out is not None
            return self._host_out

    def _push(self) -> None:
        try:
            self._cuda_ctx.push()
        except Exception as e:  # noqa: B902
            raise BackendError(f'cannot make the CUDA context current: {type(e).__name__}: '
                               f'{e}') from e

    def _pop(self, error: Optional[BaseException] = None) -> Optional[BaseException]:
        """Pop our context off this thread; return the first error (``error`` or the pop's)."""
        try:
            self._cuda.Context.pop()
        except Exception as e:  # noqa: B902
            return error or e
        return error

    # -- release -------------------------------------------------------------------------

    def release(self) -> None:
        """
        Free the engine, device and pinned buffers and the context; load() may run again.

        An array returned by infer() must not be used after release(): its pinned memory is
        given back as soon as nobody holds it (it is never freed under a live array).
        """
        with self._lock:
            self._release_locked()

    def _release_locked(self, pushed: bool = False) -> None:
        ctx, cuda = self._cuda_ctx, self._cuda
        if ctx is not None and not pushed:
            try:
                ctx.push()
                pushed = True
            except Exception as e:  # noqa: B902 - a dead context: nothing left to free
                _LOG.warning('tensorrt release: cannot make the CUDA context current: %s', e)
        try:
            if self._stream is not None and pushed:
                try:
                    self._stream.synchronize()
                except Exception:  # noqa: B902 - a failed stream must still be released
                    pass
            # TensorRT objects first: the context uses the buffers and the engine's memory.
            self._context = None
            self._engine = None
            self._runtime = None
            for buffer in self._device_buffers.values():
                if buffer is not None and pushed:
                    try:
                        buffer.free()
                    except Exception:  # noqa: B902 - best effort, keep freeing the rest
                        pass
            self._device_buffers = {}
            self._dev_in = self._dev_out = None
            # Dropped, not freed: pycuda frees pinned memory when the last reference goes,
            # which is now unless a caller still holds the output array.
            self._host_in = self._host_out = None
            self._stream = None
        finally:
            if pushed and cuda is not None:
                self._pop()
            if ctx is not None:
                try:
                    # Releases the primary-context reference; pycuda does so only on the
                    # thread that retained it (elsewhere the reference is left to the driver).
                    ctx.detach()
                except Exception:  # noqa: B902
                    pass
            self._cuda_ctx = None
            self._logger = None

    # -- info ----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Tell whether load() succeeded and release() has not been called since."""
        return self._context is not None

    @property
    def description(self) -> str:
        """Describe version, GPU, precision and where the engine came from (start-up log)."""
        if not self.loaded:
            return f'tensorrt (not loaded, precision {self.requested_precision})'
        return (f'tensorrt {self.tensorrt_version} on {self.gpu_name} '
                f'(sm {self.compute_capability}), {self.precision}, engine {self.engine_source} '
                f'in {self.load_seconds:.2f} s ({self.engine_path})')

"""
The TensorRT backend: clear refusals everywhere, control flow on fakes, numerics on a real GPU.

Three kinds of test:

* real, on any machine: without TensorRT/pycuda/GPU, load() raises BackendError naming what
  is missing, and the factory falls back to ONNX Runtime with that reason;
* fake: ``tensorrt`` and ``pycuda`` replaced by small fakes (below) that follow the real call
  signatures, check that every CUDA call runs with the context current on the calling thread,
  and run the ONNX model with ONNX Runtime in place of an engine. They test this backend's
  control flow (build vs cache, buffers allocated once, push/pop balance across threads,
  release, error mapping), NOT TensorRT;
* ``@pytest.mark.gpu``: the real thing, skipped with the reason unless ``tensorrt``, ``pycuda``
  and a CUDA device are all there (run ``pytest -m gpu`` on a GPU machine).
"""

import enum
import io
import json
from pathlib import Path
import sys
import threading
import types
from typing import Any, Optional

from edge_infer_ros.inference.backends.base import BackendError
from edge_infer_ros.inference.backends.engine_cache import EngineCache
from edge_infer_ros.inference.backends.factory import load_with_fallback
from edge_infer_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_infer_ros.inference.backends.tensorrt_backend import TensorRTBackend
from edge_infer_ros.inference.model_info import load_model_info, ModelInfo
from edge_infer_ros.inference.yolo import YoloDecoder
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
import pytest
from support import onnx_models


# -- models -------------------------------------------------------------------------------

def make_conv_model(path: Path, seed: int = 0, input_hw: tuple = (64, 64),
                    dynamic_batch: bool = False, qdq: bool = False) -> Path:
    """
    Write a tiny YOLOv8-layout detector whose output really depends on the input.

    Conv 8x8 stride 8 (3 -> 8 channels), reshape to [1, 8, N], sigmoid, boxes scaled to pixels:
    [1, 4+4, N] with N = (H/8)*(W/8). ``qdq`` adds a QuantizeLinear/DequantizeLinear pair.
    """
    rng = np.random.default_rng(seed)
    h, w = input_hw
    anchors = (h // 8) * (w // 8)
    weight = rng.normal(0, 0.2, (8, 3, 8, 8)).astype(np.float32)
    bias = rng.normal(0, 0.5, 8).astype(np.float32)
    scale = np.array([w, h, w / 4, h / 4, 1, 1, 1, 1], np.float32).reshape(1, 8, 1)
    nodes = []
    source = 'images'
    inits = [numpy_helper.from_array(weight, 'w'), numpy_helper.from_array(bias, 'b'),
             numpy_helper.from_array(np.array([1, 8, anchors], np.int64), 'shape'),
             numpy_helper.from_array(scale, 'scale')]
    if qdq:
        inits += [numpy_helper.from_array(np.array(1 / 127, np.float32), 'q_scale'),
                  numpy_helper.from_array(np.array(0, np.int8), 'q_zero')]
        nodes += [helper.make_node('QuantizeLinear', ['images', 'q_scale', 'q_zero'], ['q']),
                  helper.make_node('DequantizeLinear', ['q', 'q_scale', 'q_zero'], ['dq'])]
        source = 'dq'
    nodes += [
        helper.make_node('Conv', [source, 'w', 'b'], ['conv'], kernel_shape=[8, 8],
                         strides=[8, 8]),
        helper.make_node('Reshape', ['conv', 'shape'], ['flat']),
        helper.make_node('Sigmoid', ['flat'], ['prob']),
        helper.make_node('Mul', ['prob', 'scale'], ['output0']),
    ]
    batch: Any = 'batch' if dynamic_batch else 1
    graph = helper.make_graph(
        nodes, 'tiny_conv_detector',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, [batch, 3, h, w])],
        [helper.make_tensor_value_info('output0', TensorProto.FLOAT, [1, 8, anchors])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', onnx_models.OPSET)],
                              producer_name='edge_infer_ros-tests')
    model.ir_version = onnx_models.IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def frames(model: ModelInfo, count: int = 4, seed: int = 1) -> list:
    rng = np.random.default_rng(seed)
    return [rng.random(model.input_shape, dtype=np.float32) for _ in range(count)]


def options(tmp_path: Path, **extra: Any) -> dict:
    return {'precision': 'fp32', 'workspace_mb': 64, 'engine_cache_dir': str(tmp_path / 'c'),
            'device': 0, **extra}


@pytest.fixture
def conv_model(tmp_path: Path) -> ModelInfo:
    return load_model_info(make_conv_model(tmp_path / 'tiny.onnx'))


def ort_outputs(model: ModelInfo, inputs: list) -> list:
    backend = OnnxRuntimeBackend(model, {'intra_op_threads': 1})
    backend.load()
    try:
        return [backend.infer(x).copy() for x in inputs]
    finally:
        backend.release()


# -- real, on this machine ----------------------------------------------------------------

def gpu_status() -> tuple:
    """Return (True, '') when tensorrt, pycuda and a CUDA device are usable, else the reason."""
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # noqa: B902
        return False, f'tensorrt cannot be imported: {type(e).__name__}: {e}'
    try:
        import pycuda.driver as cuda
    except Exception as e:  # noqa: B902
        return False, f'pycuda cannot be imported: {type(e).__name__}: {e}'
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            return False, 'no CUDA device'
    except Exception as e:  # noqa: B902
        return False, f'no CUDA device: {type(e).__name__}: {e}'
    return True, ''


GPU_OK, GPU_REASON = gpu_status()
needs_gpu = pytest.mark.skipif(not GPU_OK, reason=f'needs an NVIDIA GPU with TensorRT 10 and '
                                                  f'pycuda: {GPU_REASON}')


def test_load_on_this_machine_names_what_is_missing(conv_model: ModelInfo,
                                                    tmp_path: Path) -> None:
    if GPU_OK:
        pytest.skip('TensorRT, pycuda and a GPU are present: the gpu tests cover this machine')
    backend = TensorRTBackend(conv_model, options(tmp_path))
    with pytest.raises(BackendError) as info:
        backend.load()
    message = str(info.value)
    assert ('TensorRT Python package not installed' in message or 'pycuda' in message
            or 'no CUDA device' in message), message
    assert not backend.loaded
    backend.release()  # safe after a failed load
    with pytest.raises(BackendError, match='not loaded'):
        backend.infer(np.zeros(conv_model.input_shape, np.float32))


def test_factory_falls_back_to_onnxruntime_here(conv_model: ModelInfo, tmp_path: Path) -> None:
    if GPU_OK:
        pytest.skip('TensorRT works here: no fallback to observe')
    backend, reason = load_with_fallback('tensorrt', conv_model, options(tmp_path))
    try:
        assert backend.name == 'onnxruntime'
        assert reason and 'TensorRT' in reason
    finally:
        backend.release()


def test_missing_tensorrt_is_named(conv_model: ModelInfo, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'tensorrt', None)  # import tensorrt -> ImportError
    with pytest.raises(BackendError, match='TensorRT Python package not installed'):
        TensorRTBackend(conv_model, options(tmp_path)).load()


# -- fakes --------------------------------------------------------------------------------

class FakeState:
    """What the fakes saw; knobs to make them fail."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.device_count = 1
        self.init_error: Optional[Exception] = None
        self.fast_fp16 = True
        self.fast_int8 = True
        self.weak_typing = True
        self.version = '10.3.0.26'
        self.parse_ok = True
        self.execute_ok = True
        self.refuse_plans = 0
        self.builds: list = []
        self.allocs: dict = {}
        self.next_addr = 0x1000
        self.pushes = 0
        self.pops = 0
        self.retained = 0
        self.detached = 0
        self.syncs = 0
        self.execute_threads: list = []
        self.pinned: list = []

    def stack(self) -> list:
        if not hasattr(self.local, 'stack'):
            self.local.stack = []
        return self.local.stack

    def require_context(self, what: str) -> None:
        if not self.stack():
            raise RuntimeError(f'fake CUDA: {what} without a current context on '
                               f'{threading.current_thread().name}')


def make_fake_cuda(state: FakeState) -> types.ModuleType:
    """Return a pycuda.driver stand-in with the names and signatures of the calls used."""
    cuda = types.ModuleType('pycuda.driver')

    def init(flags: int = 0) -> None:
        if state.init_error is not None:
            raise state.init_error

    class FakeContext:

        def push(self) -> None:
            state.stack().append(self)
            state.pushes += 1

        def detach(self) -> None:
            state.detached += 1

    class Context:

        @staticmethod
        def pop() -> None:
            if not state.stack():
                raise RuntimeError('fake CUDA: cannot pop non-current context')
            state.stack().pop()
            state.pops += 1

    class Device:

        def __init__(self, index: int) -> None:
            self.index = index

        @staticmethod
        def count() -> int:
            return state.device_count

        def name(self) -> str:
            return 'Fake GPU'

        def compute_capability(self) -> tuple:
            return 8, 7

        def retain_primary_context(self) -> FakeContext:
            state.retained += 1
            return FakeContext()

    class Alloc:

        def __init__(self, nbytes: int) -> None:
            state.require_context('mem_alloc')
            self.buf = np.zeros(nbytes, np.uint8)
            self.addr = state.next_addr
            self.freed = False
            state.next_addr += 0x1000 + nbytes
            state.allocs[self.addr] = self

        def __int__(self) -> int:
            return self.addr

        def free(self) -> None:
            state.require_context('free')
            self.freed = True

    class Stream:

        def __init__(self, flags: int = 0) -> None:
            state.require_context('Stream()')
            self.handle = 0xABC

        def synchronize(self) -> None:
            state.require_context('synchronize')
            state.syncs += 1

    def pagelocked_empty(shape: tuple, dtype: Any, order: str = 'C',
                         mem_flags: int = 0) -> np.ndarray:
        state.require_context('pagelocked_empty')
        array = np.zeros(shape, dtype)
        state.pinned.append(array)
        return array

    def memcpy_htod_async(dest: Alloc, src: np.ndarray, stream: Any = None) -> None:
        state.require_context('memcpy_htod_async')
        raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        dest.buf[:raw.size] = raw

    def memcpy_dtoh_async(dest: np.ndarray, src: Alloc, stream: Any = None) -> None:
        state.require_context('memcpy_dtoh_async')
        dest[...] = src.buf[:dest.nbytes].view(dest.dtype).reshape(dest.shape)

    cuda.init = init
    cuda.Context = Context
    cuda.Device = Device
    cuda.mem_alloc = Alloc
    cuda.Stream = Stream
    cuda.pagelocked_empty = pagelocked_empty
    cuda.memcpy_htod_async = memcpy_htod_async
    cuda.memcpy_dtoh_async = memcpy_dtoh_async
    return cuda


def make_fake_trt(state: FakeState) -> types.ModuleType:
    """Return a tensorrt stand-in whose 'plans' name the ONNX file and run it with ORT."""
    import onnxruntime as ort

    trt = types.ModuleType('tensorrt')
    trt.__version__ = state.version

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:

        def __init__(self) -> None:
            pass

    ILogger.Severity = Severity
    flag_names = ['FP16', 'INT8', 'TF32'] if state.weak_typing else ['TF32']
    BuilderFlag = enum.Enum('BuilderFlag', flag_names)  # noqa: N806
    MemoryPoolType = enum.Enum('MemoryPoolType', ['WORKSPACE'])  # noqa: N806
    TensorIOMode = enum.Enum('TensorIOMode', ['NONE', 'INPUT', 'OUTPUT'])  # noqa: N806
    LayerType = enum.Enum('LayerType',  # noqa: N806
                          ['CONVOLUTION', 'QUANTIZE', 'DEQUANTIZE', 'OTHER'])

    def graph_io(path: str) -> tuple:
        model = onnx.load(path)
        inits = {t.name for t in model.graph.initializer}

        def dims(value: Any) -> tuple:
            return tuple(d.dim_value if d.HasField('dim_value') else -1
                         for d in value.type.tensor_type.shape.dim)
        inputs = [(v.name, dims(v)) for v in model.graph.input if v.name not in inits]
        outputs = [(v.name, dims(v)) for v in model.graph.output]
        return model, inputs, outputs

    class Network:

        def __init__(self) -> None:
            self.inputs: list = []
            self.layers: list = []
            self.path = ''

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Any:
            return self.inputs[i]

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_layer(self, i: int) -> Any:
            return self.layers[i]

    class OnnxParser:

        def __init__(self, network: Network, logger: Any) -> None:
            self.network = network
            self.errors: list = []

        def parse_from_file(self, path: str) -> bool:
            if not state.parse_ok:
                self.errors = ['In node 0 (Conv): unsupported fake operator']
                return False
            model, inputs, _ = graph_io(path)
            self.network.path = path
            self.network.inputs = [types.SimpleNamespace(name=n, shape=s) for n, s in inputs]
            kinds = {'QuantizeLinear': LayerType.QUANTIZE,
                     'DequantizeLinear': LayerType.DEQUANTIZE,
                     'Conv': LayerType.CONVOLUTION}
            self.network.layers = [types.SimpleNamespace(type=kinds.get(n.op_type,
                                                                        LayerType.OTHER))
                                   for n in model.graph.node]
            return True

        def parse(self, model: bytes, path: Optional[str] = None) -> bool:
            ok = self.parse_from_file(io.BytesIO(bytes(model)))  # type: ignore
            self.network.path = path
            return ok

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

    class Config:

        def __init__(self) -> None:
            self.flags: set = set()
            self.pools: dict = {}
            self.profiles: list = []

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self.pools[pool] = size

        def set_flag(self, flag: Any) -> None:
            self.flags.add(flag)

        def add_optimization_profile(self, profile: Any) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Profile:

        def __init__(self) -> None:
            self.shapes: dict = {}

        def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class Builder:

        def __init__(self, logger: Any) -> None:
            self.logger = logger
            if state.weak_typing:
                self.platform_has_fast_fp16 = state.fast_fp16
                self.platform_has_fast_int8 = state.fast_int8

        def create_network(self, flags: int = 0) -> Network:
            assert flags == 0, 'TensorRT 10: explicit batch is the default, flags 0'
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            dynamic = any(-1 in t.shape for t in network.inputs)
            assert not dynamic or config.profiles, 'dynamic input without a profile'
            assert config.pools[MemoryPoolType.WORKSPACE] > 0
            flags = sorted(f.name for f in config.flags)
            state.builds.append({'path': network.path, 'flags': flags})
            return json.dumps({'fake_plan': network.path, 'flags': flags}).encode()

    class Engine:

        def __init__(self, path: str, flags: list) -> None:
            self.flags = flags
            self.session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
            _, inputs, outputs = graph_io(path)
            self.io = [(n, s, TensorIOMode.INPUT) for n, s in inputs]
            self.io += [(n, s, TensorIOMode.OUTPUT) for n, s in outputs]

        @property
        def num_io_tensors(self) -> int:
            return len(self.io)

        def get_tensor_name(self, i: int) -> str:
            return self.io[i][0]

        def get_tensor_mode(self, name: str) -> Any:
            return next(m for n, _, m in self.io if n == name)

        def get_tensor_shape(self, name: str) -> tuple:
            return next(s for n, s, _ in self.io if n == name)

        def get_tensor_dtype(self, name: str) -> str:
            return 'float32'

        def create_execution_context(self) -> 'ExecutionContext':
            return ExecutionContext(self)

    class ExecutionContext:

        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shapes = {n: s for n, s, _ in engine.io}
            self.addresses: dict = {}

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple:
            shape = self.shapes[name]
            if -1 in shape and self.engine.get_tensor_mode(name) == TensorIOMode.OUTPUT:
                shape = tuple(1 if d == -1 else d for d in shape)
            return shape

        def set_tensor_address(self, name: str, address: int) -> None:
            self.addresses[name] = address

        def execute_async_v3(self, stream_handle: int) -> bool:
            state.require_context('execute_async_v3')
            state.execute_threads.append(threading.get_ident())
            assert isinstance(stream_handle, int)
            if not state.execute_ok:
                return False
            feeds = {}
            for name, _, mode in self.engine.io:
                assert name in self.addresses, f'no address set for {name}'
                if mode == TensorIOMode.INPUT:
                    shape = self.shapes[name]
                    buf = state.allocs[self.addresses[name]].buf
                    feeds[name] = buf[:int(np.prod(shape)) * 4].view(np.float32).reshape(shape)
            names = [n for n, _, m in self.engine.io if m == TensorIOMode.OUTPUT]
            for name, value in zip(names, self.engine.session.run(names, feeds)):
                if 'FP16' in self.engine.flags:
                    value = value.astype(np.float16).astype(np.float32)
                raw = np.ascontiguousarray(value, np.float32).view(np.uint8).reshape(-1)
                state.allocs[self.addresses[name]].buf[:raw.size] = raw
            return True

    class Runtime:

        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, plan: bytes) -> Optional[Engine]:
            state.require_context('deserialize_cuda_engine')
            if state.refuse_plans > 0:
                state.refuse_plans -= 1
                return None
            data = json.loads(bytes(plan))
            return Engine(data['fake_plan'], data['flags'])

    def nptype(dtype: str) -> Any:
        return np.dtype(dtype).type

    trt.ILogger = ILogger
    trt.BuilderFlag = BuilderFlag
    trt.MemoryPoolType = MemoryPoolType
    trt.TensorIOMode = TensorIOMode
    trt.LayerType = LayerType
    trt.Builder = Builder
    trt.OnnxParser = OnnxParser
    trt.Runtime = Runtime
    trt.nptype = nptype
    return trt


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeState:
    """Install fake tensorrt and pycuda modules for one test; return their state."""
    state = FakeState()
    cuda = make_fake_cuda(state)
    pycuda = types.ModuleType('pycuda')
    pycuda.driver = cuda
    monkeypatch.setitem(sys.modules, 'pycuda', pycuda)
    monkeypatch.setitem(sys.modules, 'pycuda.driver', cuda)
    state.install_trt = lambda: monkeypatch.setitem(sys.modules, 'tensorrt',
                                                    make_fake_trt(state))
    state.install_trt()
    return state


def balanced(state: FakeState) -> bool:
    return state.pushes == state.pops and not state.stack()


def test_fake_build_then_cache_then_rebuild_on_change(fake: FakeState, tmp_path: Path) -> None:
    model = load_model_info(make_conv_model(tmp_path / 'tiny.onnx'))
    inputs = frames(model)
    expected = ort_outputs(model, inputs)

    first = TensorRTBackend(model, options(tmp_path))
    first.load()
    assert first.engine_source == 'built' and len(fake.builds) == 1
    assert first.precision == 'fp32' and first.load_seconds > 0
    assert Path(first.engine_path).is_file()
    for x, want in zip(inputs, expected):
        out = first.infer(x)
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    assert balanced(fake)
    first.release()

    second = TensorRTBackend(model, options(tmp_path))
    second.load()
    assert second.engine_source == 'cache' and len(fake.builds) == 1
    np.testing.assert_allclose(second.infer(inputs[0]), expected[0], rtol=1e-6, atol=1e-6)
    assert 'cache' in second.description and 'Fake GPU' in second.description
    second.release()

    # Same file name, other weights: another sha256, so a new engine is built.
    changed = load_model_info(make_conv_model(tmp_path / 'tiny.onnx', seed=7))
    assert changed.sha256 != model.sha256
    third = TensorRTBackend(changed, options(tmp_path))
    third.load()
    assert third.engine_source == 'built' and len(fake.builds) == 2
    assert any('model_sha256' in n for n in third.notes), third.notes
    third.release()
    assert balanced(fake)


def test_fake_buffers_allocated_once_and_one_sync_per_frame(fake: FakeState,
                                                            conv_model: ModelInfo,
                                                            tmp_path: Path) -> None:
    backend = TensorRTBackend(conv_model, options(tmp_path))
    backend.load()
    allocs, pinned, syncs = len(fake.allocs), len(fake.pinned), fake.syncs
    assert allocs == 2 and pinned == 2  # one input, one output
    out = None
    for x in frames(conv_model, 5):
        result = backend.infer(x)
        assert out is None or result is out  # the same pinned buffer, reused
        out = result
    assert len(fake.allocs) == allocs and len(fake.pinned) == pinned
    assert fake.syncs == syncs + 5
    backend.release()


def test_fake_infer_from_a_worker_thread(fake: FakeState, conv_model: ModelInfo,
                                         tmp_path: Path) -> None:
    backend = TensorRTBackend(conv_model, options(tmp_path))
    backend.load()
    inputs = frames(conv_model, 3)
    expected = ort_outputs(conv_model, inputs)
    results: list = []
    errors: list = []

    def worker() -> None:
        try:
            for x in inputs:
                results.append(backend.infer(x).copy())
            results.append(len(fake.stack()))
        except Exception as e:  # noqa: B902
            errors.append(e)

    thread = threading.Thread(target=worker, name='detector-worker')
    thread.start()
    thread.join()
    assert not errors, errors
    assert results[-1] == 0  # popped again on the worker thread
    for got, want in zip(results[:-1], expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert thread.ident in fake.execute_threads
    # Released from yet another thread: still frees with the context current.
    releaser = threading.Thread(target=backend.release)
    releaser.start()
    releaser.join()
    assert all(a.freed for a in fake.allocs.values())
    assert balanced(fake)


def test_fake_release_frees_everything_and_reloads(fake: FakeState, conv_model: ModelInfo,
                                                   tmp_path: Path) -> None:
    backend = TensorRTBackend(conv_model, options(tmp_path))
    backend.load()
    backend.load()  # loading twice does nothing
    assert fake.retained == 1
    backend.release()
    assert not backend.loaded
    assert all(a.freed for a in fake.allocs.values())
    assert fake.detached == fake.retained == 1
    assert balanced(fake)
    backend.release()  # twice is fine
    backend.load()
    assert backend.loaded and backend.engine_source == 'cache'
    backend.infer(frames(conv_model, 1)[0])
    backend.release()
    assert fake.detached == fake.retained == 2
    assert balanced(fake)


def test_fake_execute_failure_is_a_backend_error(fake: FakeState, conv_model: ModelInfo,
                                                 tmp_path: Path) -> None:
    backend = TensorRTBackend(conv_model, options(tmp_path))
    backend.load()
    fake.execute_ok = False
    with pytest.raises(BackendError, match='execute_async_v3 failed'):
        backend.infer(frames(conv_model, 1)[0])
    assert balanced(fake)  # the context was popped despite the failure
    backend.release()


def test_fake_cuda_exception_in_infer_is_a_backend_error(fake: FakeState, conv_model: ModelInfo,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    backend = TensorRTBackend(conv_model, options(tmp_path))
    backend.load()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError('cuMemcpyHtoDAsync failed: an illegal memory access')

    monkeypatch.setattr(sys.modules['pycuda.driver'], 'memcpy_htod_async', broken)
    with pytest.raises(BackendError, match='illegal memory access'):
        backend.infer(frames(conv_model, 1)[0])
    assert balanced(fake)
    backend.release()


def test_fake_wrong_input_is_a_value_error(fake: FakeState, conv_model: ModelInfo,
                                           tmp_path: Path) -> None:
    backend = TensorRTBackend(conv_model, options(tmp_path))
    backend.load()
    with pytest.raises(ValueError, match='expects a tensor of shape'):
        backend.infer(np.zeros((1, 3, 32, 32), np.float32))
    backend.release()


@pytest.mark.parametrize('count, init_error, reason', [
    (0, None, 'no CUDA device: the CUDA driver sees 0 GPUs'),
    (1, RuntimeError('cuInit failed: no CUDA-capable device is detected'), 'no CUDA device'),
])
def test_fake_no_device(fake: FakeState, conv_model: ModelInfo, tmp_path: Path, count: int,
                        init_error: Optional[Exception], reason: str) -> None:
    fake.device_count = count
    fake.init_error = init_error
    with pytest.raises(BackendError, match=reason):
        TensorRTBackend(conv_model, options(tmp_path)).load()


def test_fake_device_index_out_of_range(fake: FakeState, conv_model: ModelInfo,
                                        tmp_path: Path) -> None:
    with pytest.raises(BackendError, match='no CUDA device 3'):
        TensorRTBackend(conv_model, options(tmp_path, device=3)).load()


def test_fake_pycuda_missing(fake: FakeState, conv_model: ModelInfo, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'pycuda', None)
    monkeypatch.setitem(sys.modules, 'pycuda.driver', None)
    with pytest.raises(BackendError, match='pycuda'):
        TensorRTBackend(conv_model, options(tmp_path)).load()


def test_fake_old_tensorrt_is_refused(fake: FakeState, conv_model: ModelInfo,
                                      tmp_path: Path) -> None:
    fake.version = '8.6.1'
    fake.install_trt()
    with pytest.raises(BackendError, match='needs TensorRT 10'):
        TensorRTBackend(conv_model, options(tmp_path)).load()


@pytest.mark.parametrize('bad', [{'precision': 'fp8'}, {'workspace_mb': 0},
                                 {'workspace_mb': 'big'}, {'device': -1}])
def test_fake_bad_options(fake: FakeState, conv_model: ModelInfo, tmp_path: Path,
                          bad: dict) -> None:
    with pytest.raises(BackendError, match=next(iter(bad))):
        TensorRTBackend(conv_model, options(tmp_path, **bad)).load()


def test_fake_fp16_sets_the_flag_and_is_keyed(fake: FakeState, conv_model: ModelInfo,
                                              tmp_path: Path) -> None:
    fp16 = TensorRTBackend(conv_model, options(tmp_path, precision='fp16'))
    fp16.load()
    assert fp16.precision == 'fp16' and fake.builds[-1]['flags'] == ['FP16']
    x = frames(conv_model, 1)[0]
    half = fp16.infer(x).copy()
    fp16.release()
    fp32 = TensorRTBackend(conv_model, options(tmp_path, precision='fp32'))
    fp32.load()
    assert fp32.engine_source == 'built'  # another precision: another engine
    assert fake.builds[-1]['flags'] == []
    np.testing.assert_allclose(half, fp32.infer(x), rtol=2e-3, atol=2e-2)
    fp32.release()
    again = TensorRTBackend(conv_model, options(tmp_path, precision='fp16'))
    again.load()
    assert again.engine_source == 'cache' and again.precision == 'fp16'
    again.release()


def test_fake_no_fast_fp16_builds_fp32_with_a_note(fake: FakeState, conv_model: ModelInfo,
                                                   tmp_path: Path) -> None:
    fake.fast_fp16 = False
    backend = TensorRTBackend(conv_model, options(tmp_path, precision='fp16'))
    backend.load()
    assert backend.precision == 'fp32' and fake.builds[-1]['flags'] == []
    assert any('no fast fp16' in n for n in backend.notes)
    backend.release()
    cached = TensorRTBackend(conv_model, options(tmp_path, precision='fp16'))
    cached.load()  # the cache remembers what was really built
    assert cached.engine_source == 'cache' and cached.precision == 'fp32'
    assert any('no fast fp16' in n for n in cached.notes)
    cached.release()


def test_fake_tensorrt_without_weak_typing(fake: FakeState, conv_model: ModelInfo,
                                           tmp_path: Path) -> None:
    # TensorRT 11 removed BuilderFlag.FP16 and platform_has_fast_fp16.
    fake.version = '11.4.0.106'
    fake.weak_typing = False
    fake.install_trt()
    backend = TensorRTBackend(conv_model, options(tmp_path, precision='fp16'))
    backend.load()
    assert backend.precision == 'fp32' and fake.builds[-1]['flags'] == []
    assert any('weak typing removed' in n for n in backend.notes)
    backend.release()


def test_fake_int8_needs_qdq(fake: FakeState, conv_model: ModelInfo, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match='Q/DQ'):
        TensorRTBackend(conv_model, options(tmp_path, precision='int8')).load()
    assert balanced(fake)
    quantized = load_model_info(make_conv_model(tmp_path / 'q.onnx', qdq=True))
    backend = TensorRTBackend(quantized, options(tmp_path, precision='int8'))
    backend.load()
    assert backend.precision == 'int8' and fake.builds[-1]['flags'] == ['FP16', 'INT8']
    backend.release()


def test_fake_parse_failure_is_reported(fake: FakeState, conv_model: ModelInfo,
                                        tmp_path: Path) -> None:
    fake.parse_ok = False
    with pytest.raises(BackendError, match='cannot parse .*unsupported fake operator'):
        TensorRTBackend(conv_model, options(tmp_path)).load()
    assert balanced(fake) and fake.detached == fake.retained


def test_fake_cached_plan_refused_by_tensorrt_is_rebuilt(fake: FakeState,
                                                         conv_model: ModelInfo,
                                                         tmp_path: Path) -> None:
    first = TensorRTBackend(conv_model, options(tmp_path))
    first.load()
    first.release()
    fake.refuse_plans = 1  # the cached plan only, e.g. the driver changed under it
    second = TensorRTBackend(conv_model, options(tmp_path))
    second.load()
    assert second.engine_source == 'built' and len(fake.builds) == 2
    assert any('refused by TensorRT' in n for n in second.notes), second.notes
    second.release()
    third = TensorRTBackend(conv_model, options(tmp_path))
    third.load()
    assert third.engine_source == 'cache'
    third.release()
    fake.refuse_plans = 2  # cached and rebuilt plan: a clear error, nothing left pushed
    with pytest.raises(BackendError, match='cannot deserialize the engine it just built'):
        TensorRTBackend(conv_model, options(tmp_path)).load()
    assert balanced(fake) and fake.detached == fake.retained


def test_fake_plan_failing_its_first_run_is_not_cached(fake: FakeState,
                                                       conv_model: ModelInfo,
                                                       tmp_path: Path) -> None:
    fake.execute_ok = False
    backend = TensorRTBackend(conv_model, options(tmp_path))
    with pytest.raises(BackendError, match='execute_async_v3 failed'):
        backend.load()
    assert not backend.loaded and balanced(fake)
    assert all(a.freed for a in fake.allocs.values())
    assert not list((tmp_path / 'c').glob('*.engine'))
    fake.execute_ok = True
    backend.load()
    assert backend.engine_source == 'built' and len(fake.builds) == 2
    backend.release()


def test_fake_unwritable_cache_still_loads(fake: FakeState, conv_model: ModelInfo,
                                           tmp_path: Path) -> None:
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    backend = TensorRTBackend(conv_model, options(tmp_path, engine_cache_dir=str(blocker)))
    backend.load()
    assert backend.engine_source == 'built'
    assert any('engine not cached' in n for n in backend.notes)
    backend.release()


def test_fake_dynamic_batch_gets_a_profile(fake: FakeState, tmp_path: Path) -> None:
    model = load_model_info(make_conv_model(tmp_path / 'dyn.onnx', dynamic_batch=True))
    backend = TensorRTBackend(model, options(tmp_path))
    backend.load()
    assert any('dynamic input dims' in n for n in backend.notes)
    x = frames(model, 1)[0]
    np.testing.assert_allclose(backend.infer(x), ort_outputs(model, [x])[0], rtol=1e-6,
                               atol=1e-6)
    backend.release()


def test_fake_cache_key_holds_gpu_and_version(fake: FakeState, conv_model: ModelInfo,
                                              tmp_path: Path) -> None:
    backend = TensorRTBackend(conv_model, options(tmp_path))
    backend.load()
    backend.release()
    sidecar = json.loads(Path(backend.engine_path).with_suffix('.json').read_text())
    assert sidecar['key']['gpu_name'] == 'Fake GPU'
    assert sidecar['key']['compute_capability'] == '8.7'
    assert sidecar['key']['tensorrt_version'] == '10.3.0.26'
    assert sidecar['key']['model_sha256'] == conv_model.sha256
    assert sidecar['key']['input_shape'] == list(conv_model.input_shape)
    assert Path(backend.engine_path).parent == EngineCache(tmp_path / 'c').directory


# -- real GPU -----------------------------------------------------------------------------

def detections(model: ModelInfo, output: np.ndarray) -> tuple:
    decoder = YoloDecoder(model.layout, model.num_classes)
    return decoder.decode(np.asarray(output, np.float32), 0.25)


@pytest.mark.gpu
@needs_gpu
def test_gpu_matches_onnxruntime(tmp_path: Path) -> None:
    model = load_model_info(make_conv_model(tmp_path / 'tiny.onnx'))
    inputs = frames(model, 6)
    expected = ort_outputs(model, inputs)
    backend = TensorRTBackend(model, options(tmp_path, precision='fp32'))
    backend.load()
    try:
        for x, want in zip(inputs, expected):
            got = backend.infer(x).copy()
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
            boxes, scores, classes = detections(model, got)
            want_boxes, want_scores, want_classes = detections(model, want)
            assert len(boxes) == len(want_boxes) > 0
            np.testing.assert_array_equal(classes, want_classes)
            np.testing.assert_allclose(boxes, want_boxes, atol=0.05)
            np.testing.assert_allclose(scores, want_scores, atol=1e-3)
    finally:
        backend.release()


@pytest.mark.gpu
@needs_gpu
def test_gpu_planted_detections_match(tmp_path: Path) -> None:
    boxes = np.array([[10, 10, 8, 8], [20, 12, 6, 10]], np.float32)
    scores = np.array([[0.9, 0.0, 0.0, 0.0], [0.0, 0.0, 0.8, 0.0]], np.float32)
    path, _ = onnx_models.make_yolov8_model(tmp_path / 'planted.onnx', num_anchors=2,
                                            boxes=boxes, scores=scores)
    model = load_model_info(path, layout='yolov8')
    x = frames(model, 1)[0]
    backend = TensorRTBackend(model, options(tmp_path, precision='fp32'))
    backend.load()
    try:
        got = detections(model, backend.infer(x))
    finally:
        backend.release()
    want = detections(model, ort_outputs(model, [x])[0])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.gpu
@needs_gpu
def test_gpu_second_load_comes_from_cache_and_change_rebuilds(tmp_path: Path) -> None:
    model = load_model_info(make_conv_model(tmp_path / 'tiny.onnx'))
    first = TensorRTBackend(model, options(tmp_path))
    first.load()
    first.release()
    second = TensorRTBackend(model, options(tmp_path))
    second.load()
    x = frames(model, 1)[0]
    try:
        assert first.engine_source == 'built' and second.engine_source == 'cache'
        assert second.load_seconds < first.load_seconds
        np.testing.assert_allclose(second.infer(x), ort_outputs(model, [x])[0], rtol=1e-3,
                                   atol=1e-3)
    finally:
        second.release()
    changed = load_model_info(make_conv_model(tmp_path / 'tiny.onnx', seed=3))
    third = TensorRTBackend(changed, options(tmp_path))
    third.load()
    try:
        assert third.engine_source == 'built'
    finally:
        third.release()


@pytest.mark.gpu
@needs_gpu
def test_gpu_fp16_agrees_with_fp32(tmp_path: Path) -> None:
    model = load_model_info(make_conv_model(tmp_path / 'tiny.onnx'))
    inputs = frames(model, 4)
    outs = {}
    for precision in ('fp32', 'fp16'):
        backend = TensorRTBackend(model, options(tmp_path, precision=precision))
        backend.load()
        try:
            outs[precision] = ([backend.infer(x).copy() for x in inputs], backend.precision)
        finally:
            backend.release()
    if outs['fp16'][1] != 'fp16':
        pytest.skip(f'this GPU/TensorRT built {outs["fp16"][1]} for fp16')
    for half, full in zip(outs['fp16'][0], outs['fp32'][0]):
        # Boxes are in pixels (up to 64), scores in [0, 1].
        np.testing.assert_allclose(half[:, 4:], full[:, 4:], atol=1e-2)
        np.testing.assert_allclose(half[:, :4], full[:, :4], rtol=1e-2, atol=0.1)


@pytest.mark.gpu
@needs_gpu
def test_gpu_worker_thread_release_and_reload(tmp_path: Path) -> None:
    model = load_model_info(make_conv_model(tmp_path / 'tiny.onnx'))
    x = frames(model, 1)[0]
    want = ort_outputs(model, [x])[0]
    backend = TensorRTBackend(model, options(tmp_path))
    backend.load()
    results: list = []
    thread = threading.Thread(target=lambda: results.append(backend.infer(x).copy()))
    thread.start()
    thread.join()
    try:
        assert results, 'infer() on a worker thread failed (see the thread traceback)'
        np.testing.assert_allclose(results[0], want, rtol=1e-3, atol=1e-3)
    finally:
        backend.release()
    backend.load()
    try:
        np.testing.assert_allclose(backend.infer(x), want, rtol=1e-3, atol=1e-3)
    finally:
        backend.release()

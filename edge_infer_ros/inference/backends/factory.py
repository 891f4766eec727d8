"""
Create inference backends by name, and fall back to ONNX Runtime when the preferred one fails.

Backends are imported lazily: importing TensorRT (or pycuda) on a machine without a GPU fails
or is slow, and must only happen when that backend is asked for. :func:`load_with_fallback`
keeps the pipeline running on the CPU when the GPU engine cannot start, and says why so the
node can report it as a diagnostic instead of silently running slower.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from edge_infer_ros.inference.backends.base import BackendError, DetectorBackend
from edge_infer_ros.inference.model_info import ModelInfo

#: Backend names accepted by :func:`create_backend`.
BACKENDS = ('onnxruntime', 'tensorrt')

_DISPLAY = {'onnxruntime': 'ONNX Runtime', 'tensorrt': 'TensorRT'}


def create_backend(name: str, model: ModelInfo,
                   options: Optional[Mapping[str, Any]] = None) -> DetectorBackend:
    """
    Instantiate (not load) the backend called ``name`` for ``model``.

    Raises BackendError for an unknown name or when the backend's module cannot be imported
    (e.g. TensorRT not installed), with the reason.
    """
    options = options or {}
    if name == 'onnxruntime':
        try:
            from edge_infer_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
        except ImportError as e:
            raise BackendError(f'ONNX Runtime backend cannot be imported: {e}') from e
        return OnnxRuntimeBackend(model, options)
    if name == 'tensorrt':
        try:
            from edge_infer_ros.inference.backends.tensorrt_backend import TensorRTBackend
        except Exception as e:  # noqa: B902 - ImportError, or a CUDA error at import time
            raise BackendError(f'TensorRT backend cannot be imported: '
                               f'{type(e).__name__}: {e}') from e
        return TensorRTBackend(model, options)
    raise BackendError(f'unknown backend {name!r}: expected one of {BACKENDS}')


def _try_load(name: str, model: ModelInfo,
              options: Mapping[str, Any]) -> tuple[Optional[DetectorBackend], str]:
    """Create and load one backend; return (backend, '') or (None, why it failed)."""
    backend = None
    try:
        backend = create_backend(name, model, options)
        backend.load()
        return backend, ''
    except Exception as e:  # noqa: B902 - any failure means: use the fallback
        if backend is not None:
            try:
                backend.release()
            except Exception:  # noqa: B902 - best effort; the load error is what matters
                pass
        label = _DISPLAY.get(name, repr(name))
        detail = str(e) if isinstance(e, BackendError) else f'{type(e).__name__}: {e}'
        return None, f'{label} backend unavailable: {detail}'


def load_with_fallback(preferred: str, model: ModelInfo,
                       options: Optional[Mapping[str, Any]] = None,
                       fallback: str = 'onnxruntime') -> tuple[DetectorBackend, Optional[str]]:
    """
    Load ``preferred``, else ``fallback``: return (loaded backend, reason or None).

    The reason, set only when the fallback is used, says why ``preferred`` could not be.
    Raises BackendError with both reasons when the fallback fails too (or when there is no
    different fallback to try).
    """
    options = options or {}
    backend, reason = _try_load(preferred, model, options)
    if backend is not None:
        return backend, None
    if not fallback or fallback == preferred:
        raise BackendError(f'{reason}; no fallback backend to try')
    backend, fallback_reason = _try_load(fallback, model, options)
    if backend is not None:
        return backend, reason
    raise BackendError(f'no backend could run {model.path}: {reason}; fallback: '
                       f'{fallback_reason}')

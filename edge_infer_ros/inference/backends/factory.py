"""
Create inference backends by name, and fall back to ONNX Runtime when the preferred one fails.

Backends are imported lazily: importing TensorRT (or pycuda) on a machine without a GPU fails
or is slow, and must only happen when that backend is asked for. :class:`FallbackBackend`
keeps the pipeline running on the CPU when the GPU engine cannot start or fails while running,
and says why, so the node can report it as a diagnostic instead of silently running slower.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Optional

from edge_infer_ros.inference.backends.base import BackendError, DetectorBackend
from edge_infer_ros.inference.model_info import ModelInfo
import numpy as np

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


class FallbackBackend(DetectorBackend):
    """
    The preferred backend, replaced by the fallback when it cannot start or fails while running.

    One rule for both moments: the detector sees a single backend whose ``infer()`` never
    raises for a failure the fallback can absorb; ``fallback_reason`` says why it runs on the
    fallback, and ``on_fallback`` (called outside the hot path, once per switch) lets the node
    log and report it. ``fallback`` of ``'none'`` (or the preferred backend itself) turns the
    fallback off: errors then propagate.
    """

    def __init__(self, preferred: str, model: ModelInfo, options: Optional[Mapping[str, Any]],
                 fallback: str = 'onnxruntime',
                 on_fallback: Optional[Callable[[str], None]] = None) -> None:
        super().__init__(model, options or {})
        self.preferred = preferred
        self.fallback = '' if fallback in ('', 'none', preferred) else fallback
        self.fallback_reason: Optional[str] = None
        self._on_fallback = on_fallback
        self._active: Optional[DetectorBackend] = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:  # type: ignore[override]  # the running backend's name
        """Name of the backend that runs now."""
        return self._active.name if self._active is not None else self.preferred

    @property
    def description(self) -> str:
        """Describe the running engine."""
        return self._active.description if self._active is not None else 'not loaded'

    @property
    def active(self) -> Optional[DetectorBackend]:
        """Return the backend that runs now (None before load() and after release())."""
        return self._active

    @property
    def on_fallback_backend(self) -> bool:
        """Tell whether the fallback runs in place of the preferred backend."""
        return self.fallback_reason is not None

    def load(self) -> None:
        """Load the preferred backend, else the fallback; BackendError when neither starts."""
        self.release()
        if not self.fallback:
            backend = create_backend(self.preferred, self.model, self.options)
            backend.load()
            reason = None
        else:
            backend, reason = load_with_fallback(self.preferred, self.model, self.options,
                                                 self.fallback)
        with self._lock:
            self._active, self.fallback_reason = backend, reason
        if reason is not None and self._on_fallback is not None:
            self._on_fallback(reason)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the active backend; on its failure switch to the fallback and run that."""
        active = self._active
        if active is None:
            raise BackendError(f'no backend loaded for {self.model.path}')
        try:
            return active.infer(tensor)
        except BackendError as error:
            if not self.fallback or active.name == self.fallback:
                raise
            self._switch(active, f'{active.name} failed while running: {error}')
            assert self._active is not None
            return self._active.infer(tensor)

    def _switch(self, failed: DetectorBackend, reason: str) -> None:
        replacement = create_backend(self.fallback, self.model, self.options)
        replacement.load()  # a BackendError here propagates: nothing left to fall back to
        with self._lock:
            self._active, self.fallback_reason = replacement, reason
        failed.release()
        if self._on_fallback is not None:
            self._on_fallback(reason)

    def release(self) -> None:
        """Release the active backend (GPU memory too)."""
        with self._lock:
            active, self._active = self._active, None
        if active is not None:
            active.release()

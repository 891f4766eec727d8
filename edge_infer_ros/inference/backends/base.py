"""
The interface every inference engine implements, so the detector node can swap engines.

The detector only ever calls :meth:`DetectorBackend.infer` per frame; everything slow (engine
build, session creation, buffer allocation) happens once in :meth:`DetectorBackend.load`, and
:meth:`DetectorBackend.release` gives it all back so a backend can be reloaded or replaced at
run time (e.g. falling back from TensorRT to ONNX Runtime).
"""

from __future__ import annotations

import abc
from typing import Any, Mapping

from edge_infer_ros.inference.model_info import ModelInfo
import numpy as np


class BackendError(RuntimeError):
    """A backend cannot start or failed; the message says why."""


class DetectorBackend(abc.ABC):
    """One inference engine for one model; load() does the heavy work, infer() is the hot path."""

    #: 'onnxruntime' or 'tensorrt'
    name: str = ''

    def __init__(self, model: ModelInfo, options: Mapping[str, Any]) -> None:
        self.model = model
        self.options: dict[str, Any] = dict(options or {})

    @abc.abstractmethod
    def load(self) -> None:
        """Create the session or engine and allocate buffers once; raise BackendError."""

    @abc.abstractmethod
    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """
        Run the model on one (1, 3, H, W) tensor of the model's input dtype.

        Returns the raw output of ``model.output_shape``; it may be a buffer reused by the
        next call, so it is valid only until the next ``infer()``. Raises ValueError for a
        tensor of the wrong shape or dtype.
        """

    @abc.abstractmethod
    def release(self) -> None:
        """Free everything (GPU memory too); load() may be called again afterwards."""

    @property
    def description(self) -> str:
        """Describe the engine for logs and diagnostics."""
        return self.name

    def check_input(self, tensor: np.ndarray) -> None:
        """Raise ValueError unless ``tensor`` has the model's input shape and dtype (cheap)."""
        shape = self.model.input_shape
        if tensor.shape != shape or tensor.dtype != self.model.input_dtype:
            raise ValueError(f'{self.name} backend for {self.model.path} expects a tensor of '
                             f'shape {list(shape)} {self.model.input_dtype}, got '
                             f'{list(tensor.shape)} {tensor.dtype}')

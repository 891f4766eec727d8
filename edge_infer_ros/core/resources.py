"""Where the package's own files are: the shipped model and the default configuration."""

from __future__ import annotations

from pathlib import Path

PACKAGE = 'edge_infer_ros'
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def share_dir() -> Path:
    """Return the package's share directory, or the source tree when not installed."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: B902 - not installed, or no ament index: use the source tree
        return _SOURCE_ROOT


def default_model_path() -> str:
    """Return the path of the detector that ships with the package."""
    return str(share_dir() / 'models' / 'detector.onnx')


def config_path(name: str) -> str:
    """Return the path of a file of config/ (pipeline.yaml, budget.yaml)."""
    return str(share_dir() / 'config' / name)


#: Short names of the shipped models: ``model:=int8`` runs the INT8 (QDQ) one.
SHIPPED_MODELS = {'fp32': 'detector.onnx', 'int8': 'detector_int8.onnx'}


def resolve_model_path(path: str) -> str:
    """Resolve a model path: empty means the shipped model; 'int8' / 'fp32' a shipped one."""
    if path in SHIPPED_MODELS:
        return str(share_dir() / 'models' / SHIPPED_MODELS[path])
    return path or default_model_path()

"""Inference backends of the detector: ONNX Runtime (CPU) and TensorRT (GPU)."""

"""
Checks of the shipped INT8 detector (models/detector_int8.onnx) against its metadata.

Why: the INT8 file is only worth shipping while it stays as accurate as the FP32 model it was
made from; its metadata pins the file, the source model and the accuracy measured, and this
re-measures that accuracy the way evaluate_model does.
"""

import json
from pathlib import Path

from edge_infer_ros.inference.model_info import file_sha256, load_model_info
from edge_infer_ros.inference.precision import graph_precision
from edge_infer_ros.stages.quantize import evaluate_model
import pytest

MODELS = Path(__file__).resolve().parents[2] / 'models'


@pytest.fixture(scope='module')
def meta() -> dict:
    """Return the shipped INT8 metadata."""
    return json.loads((MODELS / 'detector_int8.json').read_text(encoding='utf-8'))


def test_file_source_and_size(meta: dict) -> None:
    int8, fp32 = MODELS / 'detector_int8.onnx', MODELS / 'detector.onnx'
    fp32_meta = json.loads((MODELS / 'detector.json').read_text(encoding='utf-8'))
    assert meta['file'] == int8.name and meta['sha256'] == file_sha256(int8)
    assert meta['source_model']['sha256'] == fp32_meta['sha256'] == file_sha256(fp32)
    assert int8.stat().st_size < fp32.stat().st_size / 2
    assert meta['precision'] == 'int8' and graph_precision(int8) == 'int8'
    q = meta['quantization']
    assert q['format'] == 'QDQ' and q['per_channel'] is True
    assert len(q['selection']['candidates']) == 6
    info = load_model_info(int8)
    assert info.pinned and info.class_names == tuple(fp32_meta['class_names'])
    assert info.input_shape == tuple(fp32_meta['input_shape'])


def test_accuracy_within_001_of_fp32(meta: dict) -> None:
    assert abs(meta['eval']['map50'] - meta['eval']['fp32_map50']) <= 0.01
    got = evaluate_model(MODELS / 'detector_int8.onnx', frames=meta['eval']['frames'])
    assert got['map50'] == pytest.approx(meta['eval']['map50'], abs=0.005), got
    assert got['map50_95'] == pytest.approx(meta['eval']['map50_95'], abs=0.01), got

"""Tests of model verification: every bad model file is refused with a message naming it."""

import hashlib
import json
from pathlib import Path

from edge_infer_ros.inference.model_info import load_model_info, ModelError, ModelInfo
import numpy as np
import pytest
from support.onnx_models import (make_constant_output_model, make_yolov5_model,
                                 make_yolov8_model, write_metadata_json,
                                 write_ultralytics_metadata)

NAMES = ['ball', 'box', 'cone', 'person']


@pytest.fixture
def v8_model(tmp_path: Path) -> Path:
    path, _ = make_yolov8_model(tmp_path / 'detector.onnx', 4, 42, (32, 64))
    return path


def test_plain_model_is_described_from_the_graph(v8_model: Path) -> None:
    info = load_model_info(v8_model)
    assert isinstance(info, ModelInfo)
    assert info.path == str(v8_model)
    assert info.sha256 == hashlib.sha256(v8_model.read_bytes()).hexdigest()
    assert info.input_name == 'images' and info.output_name == 'output0'
    assert info.input_shape == (1, 3, 32, 64) and info.input_hw == (32, 64)
    assert info.input_dtype == 'float32' and info.output_dtype == 'float32'
    assert info.output_shape == (1, 8, 42) and info.num_anchors == 42
    assert info.layout == 'yolov8'
    assert info.class_names == ('class_0', 'class_1', 'class_2', 'class_3')
    assert info.num_classes == 4
    assert (info.color_order, info.letterbox_pad_value, info.normalize) == ('rgb', 114, 'div255')
    assert info.metadata_path == ''


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / 'nope.onnx'
    with pytest.raises(ModelError, match=f'model file {missing} not found'):
        load_model_info(missing)
    with pytest.raises(ModelError, match='not a regular file'):
        load_model_info(tmp_path)


def test_truncated_file(v8_model: Path) -> None:
    v8_model.write_bytes(v8_model.read_bytes()[:100])
    with pytest.raises(ModelError, match=f'{v8_model} is not a valid ONNX model '
                                         r'\(truncated or corrupt\)'):
        load_model_info(v8_model)


@pytest.mark.parametrize('seed', range(5))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / 'random.onnx'
    path.write_bytes(np.random.default_rng(seed).bytes(4096))
    with pytest.raises(ModelError, match='not a valid ONNX model'):
        load_model_info(path)


def test_metadata_json_is_applied(v8_model: Path) -> None:
    meta = write_metadata_json(v8_model, class_names=NAMES, layout='yolov8', color_order='bgr',
                               letterbox_pad_value=0, input_shape=[1, 3, 32, 64],
                               input_name='images', output_name='output0', extra='ignored')
    info = load_model_info(v8_model)
    assert info.metadata_path == str(meta)
    assert info.class_names == tuple(NAMES)
    assert (info.color_order, info.letterbox_pad_value) == ('bgr', 0)
    assert info.notes == ()


def test_sha256_mismatch_via_metadata(v8_model: Path) -> None:
    write_metadata_json(v8_model, sha256='ab' * 32, class_names=NAMES)
    with pytest.raises(ModelError, match=f'model file {v8_model} sha256 is [0-9a-f]{{64}}, '
                                         f'metadata .* expects {"ab" * 32}: refusing'):
        load_model_info(v8_model)


def test_model_changed_after_metadata_was_written(v8_model: Path, tmp_path: Path) -> None:
    write_metadata_json(v8_model, class_names=NAMES)
    make_yolov8_model(v8_model, 4, 43, (32, 64))  # retrained: a different file, same name
    with pytest.raises(ModelError, match='refusing a tampered or different file'):
        load_model_info(v8_model)
    # An explicit metadata path is used the same way.
    meta = write_metadata_json(v8_model, tmp_path / 'elsewhere.json', sha256='00' * 32)
    with pytest.raises(ModelError, match='elsewhere.json expects'):
        load_model_info(v8_model, metadata_path=meta)


def test_sha256_mismatch_via_expected_sha256(v8_model: Path) -> None:
    with pytest.raises(ModelError, match=f'model file {v8_model} sha256 is .*, expected_sha256 '
                                         f'expects {"cd" * 32}: refusing'):
        load_model_info(v8_model, expected_sha256='cd' * 32)
    good = hashlib.sha256(v8_model.read_bytes()).hexdigest()
    assert load_model_info(v8_model, expected_sha256=good.upper()).sha256 == good


def test_bad_metadata_files(v8_model: Path, tmp_path: Path) -> None:
    v8_model.with_suffix('.json').write_text('{not json', encoding='utf-8')
    with pytest.raises(ModelError, match='is not valid JSON'):
        load_model_info(v8_model)
    with pytest.raises(ModelError, match='metadata file .*absent.json .* not found'):
        load_model_info(v8_model, metadata_path=tmp_path / 'absent.json')
    write_metadata_json(v8_model, class_names=NAMES[:3], layout='yolov8')
    with pytest.raises(ModelError, match='has 4 classes, but metadata .* lists 3 class names'):
        load_model_info(v8_model)
    write_metadata_json(v8_model, class_names=NAMES[:3])
    with pytest.raises(ModelError, match='no known YOLO layout with 3 classes.*from metadata'):
        load_model_info(v8_model)
    write_metadata_json(v8_model, color_order='rgba')
    with pytest.raises(ModelError, match='color_order'):
        load_model_info(v8_model)
    write_metadata_json(v8_model, input_shape=[1, 3, 64, 64])
    with pytest.raises(ModelError, match='dim 2 differs'):
        load_model_info(v8_model)
    write_metadata_json(v8_model, input_name='image')
    with pytest.raises(ModelError, match="no input named 'image'"):
        load_model_info(v8_model)


@pytest.mark.parametrize('shape', [(1, 4, 9), (1, 84), (1, 4, 4, 100), (1, 9, 9)])
def test_unknown_layout_shape(tmp_path: Path, shape) -> None:
    path = make_constant_output_model(tmp_path / 'odd.onnx', np.zeros(shape, np.float32))
    with pytest.raises(ModelError, match=f'model {path} output shape .* matches no known YOLO '
                                         r'layout: expected \[1, 4\+C, N\]'):
        load_model_info(path)


def test_layout_inconsistent_with_class_names(tmp_path: Path) -> None:
    path = make_constant_output_model(tmp_path / 'odd.onnx', np.zeros((1, 7, 9), np.float32))
    with pytest.raises(ModelError, match=r'output shape \[1, 7, 9\] matches no known YOLO '
                                         'layout with 5 classes'):
        load_model_info(path, class_names=['a', 'b', 'c', 'd', 'e'])
    assert load_model_info(path, class_names=NAMES).layout == 'yolov5'
    with pytest.raises(ModelError, match=r'\[1, 7, 9\] as yolov8 has 3 classes, but the '
                                         'class_names parameter lists 4'):
        load_model_info(path, layout='yolov8', class_names=NAMES)
    with pytest.raises(ModelError, match='layout'):
        load_model_info(path, layout='yolov7')


def test_forced_yolov5_layout(tmp_path: Path) -> None:
    path, _ = make_yolov5_model(tmp_path / 'v5.onnx', 4, 30, (32, 32))
    info = load_model_info(path, layout='yolov5')
    assert info.layout == 'yolov5' and info.num_classes == 4 and info.num_anchors == 30
    # Auto-detection reads [1, 30, 9] the same way (fewer channels than anchors).
    assert load_model_info(path).layout == 'yolov5'


def test_dynamic_spatial_dims(tmp_path: Path) -> None:
    out = np.zeros((1, 8, 21), np.float32)
    path = make_constant_output_model(tmp_path / 'dyn.onnx', out,
                                      input_dims=['batch', 3, 'height', 'width'])
    with pytest.raises(ModelError, match=f'model {path} input .* dynamic spatial size .* '
                                         'static input size .* metadata'):
        load_model_info(path)
    write_metadata_json(path, input_shape=[1, 3, 32, 32])
    assert load_model_info(path).input_shape == (1, 3, 32, 32)


def test_dynamic_batch_is_one(tmp_path: Path) -> None:
    path = make_constant_output_model(tmp_path / 'b.onnx', np.zeros((1, 8, 21), np.float32),
                                      input_dims=['batch', 3, 32, 32],
                                      output_dims=['batch', 8, 21])
    info = load_model_info(path)
    assert info.input_shape == (1, 3, 32, 32) and info.output_shape == (1, 8, 21)


def test_dynamic_anchor_count_is_derived(tmp_path: Path) -> None:
    # Ultralytics dynamic export: ['batch', 4+C, 'anchors'] with imgsz in metadata_props.
    anchors = 16 + 4 + 1  # 32x32 input at strides 8, 16, 32
    path = make_constant_output_model(tmp_path / 'u.onnx', np.zeros((1, 8, anchors), np.float32),
                                      input_dims=['batch', 3, 'h', 'w'],
                                      output_dims=['batch', 8, 'anchors'])
    write_ultralytics_metadata(path, NAMES, imgsz=[32, 32])
    info = load_model_info(path)
    assert info.input_shape == (1, 3, 32, 32)
    assert info.output_shape == (1, 8, anchors)
    assert any('derived' in note for note in info.notes)


def test_metadata_props_names_parsed(v8_model: Path) -> None:
    write_ultralytics_metadata(v8_model, NAMES, imgsz=[32, 64],
                               extra={'task': 'detect', 'stride': '32'})
    info = load_model_info(v8_model)
    assert info.class_names == tuple(NAMES)
    # The class_names parameter wins over the model's own names.
    assert load_model_info(v8_model, class_names=['a', 'b', 'c', 'd']).class_names[0] == 'a'


def test_unsafe_or_broken_metadata_props_names_are_ignored(tmp_path: Path) -> None:
    path, _ = make_yolov8_model(tmp_path / 'm.onnx', 2, 20, (32, 32),
                                metadata={'names': "__import__('os').system('false')"})
    info = load_model_info(path)
    assert info.class_names == ('class_0', 'class_1')
    assert any('unparsable' in note for note in info.notes)
    path, _ = make_yolov8_model(tmp_path / 'm2.onnx', 2, 20, (32, 32),
                                metadata={'names': "{0: 'a', 1: 'b', 2: 'c'}"})
    with pytest.raises(ModelError, match='with 3 classes.*names in .*m2.onnx metadata_props'):
        load_model_info(path)


def test_input_checks(tmp_path: Path) -> None:
    out = np.zeros((1, 8, 21), np.float32)
    path = make_constant_output_model(tmp_path / 'gray.onnx', out, input_dims=[1, 1, 32, 32])
    with pytest.raises(ModelError, match='1 channels: expected 3'):
        load_model_info(path)
    path = make_constant_output_model(tmp_path / 'flat.onnx', out, input_dims=[1, 3072])
    with pytest.raises(ModelError, match=r'expected 4-D \(N, 3, H, W\)'):
        load_model_info(path)
    path = make_constant_output_model(tmp_path / 'b2.onnx', out, input_dims=[2, 3, 32, 32])
    with pytest.raises(ModelError, match='batch 2: expected 1'):
        load_model_info(path)


def test_float16_and_multiple_outputs(tmp_path: Path) -> None:
    path, _ = make_yolov8_model(tmp_path / 'h.onnx', 4, 21, (32, 32), dtype='float16',
                                extra_outputs=1)
    info = load_model_info(path)
    assert info.input_dtype == 'float16' and info.output_dtype == 'float16'
    assert info.output_name == 'output0'
    assert any('2 outputs' in note for note in info.notes)


def test_metadata_json_shape_written_by_training(tmp_path: Path) -> None:
    # What the training script writes beside models/detector.onnx, read back unchanged.
    path, _ = make_yolov8_model(tmp_path / 'detector.onnx', 4, 21, (32, 32))
    meta = {'sha256': hashlib.sha256(path.read_bytes()).hexdigest(), 'input_name': 'images',
            'input_shape': [1, 3, 32, 32], 'output_name': 'output0', 'layout': 'yolov8',
            'class_names': NAMES, 'color_order': 'rgb', 'normalize': 'div255',
            'letterbox_pad_value': 114}
    path.with_suffix('.json').write_text(json.dumps(meta), encoding='utf-8')
    info = load_model_info(str(path))
    assert info.class_names == tuple(NAMES) and info.layout == 'yolov8'


def test_a_class_name_over_the_limit_is_refused(tmp_path) -> None:
    from edge_infer_ros.core.validate import MAX_CLASS_NAME
    path, _ = make_yolov8_model(tmp_path / 'm.onnx', 2, 50, (32, 32))
    with pytest.raises(ModelError, match=f'at most {MAX_CLASS_NAME}'):
        load_model_info(path, class_names=['ball', 'x' * (MAX_CLASS_NAME + 1)])

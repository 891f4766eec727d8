"""
Check the INT8 quantizer (stages/quantize.py) and evaluate_model.

A YOLOv8-shaped model quantized from a folder of frames, the choice recorded in its metadata,
the refusals.

Why: an INT8 file that loads but silently differs (wrong preprocessing, no Q/DQ nodes, a
metadata file that pins another file) is worse than none; and models the tool cannot
quantize must be refused with the reason, not crash deep in onnxruntime.
"""

import json
from pathlib import Path

import cv2
from edge_infer_ros.core.resources import resolve_model_path
from edge_infer_ros.inference.model_info import file_sha256, load_model_info
from edge_infer_ros.inference.precision import graph_precision
from edge_infer_ros.stages.calibration_frames import iter_frames, QuantizeError
from edge_infer_ros.stages.quantize import _Runner, agreement, Candidate, check_quantizable, \
    head_nodes, quantize_model
from edge_infer_ros.stages.quantize_cli import evaluate_main, main
from edge_infer_ros.stages.synthetic import SyntheticScene
import numpy as np
import onnxruntime as ort
import pytest

from support.bags import storage_file, write_bag
from support.onnx_models import make_yolov8_conv_model, make_yolov8_model


@pytest.fixture(scope='module')
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write a folder of 12 camera-like frames (two synthetic sequences, 160x120)."""
    folder = tmp_path_factory.mktemp('frames')
    for seed in (7, 8):
        scene = SyntheticScene(width=160, height=120, seed=seed)
        for idx, img, _ in scene.frames(0, 30, 5):
            cv2.imwrite(str(folder / f's{seed}_{idx:03d}.png'), img)
    (folder / 'notes.txt').write_text('not an image')
    return folder


@pytest.fixture(scope='module')
def yolo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build a YOLOv8-architecture model (random weights, 64x64 input) with its metadata."""
    return make_yolov8_conv_model(tmp_path_factory.mktemp('model') / 'yolo.onnx')


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return sess.run(None, {'images': x})[0]


def test_quantizes_a_yolov8_model_from_a_folder(yolo: Path, frames_dir: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / 'yolo_int8.onnx'
    report = quantize_model(yolo, frames_dir, out, frames=12,
                            candidates=[Candidate('minmax', False), Candidate('minmax', True)],
                            timing_runs=2)
    assert out.is_file() and report.metadata_path == tmp_path / 'yolo_int8.json'
    assert graph_precision(out) == 'int8' and graph_precision(yolo) == 'fp32'
    x = np.random.default_rng(0).random((1, 3, 64, 64), np.float32)
    assert _run(out, x).shape == _run(yolo, x).shape == (1, 8, 84)
    meta = json.loads(report.metadata_path.read_text())
    assert meta['sha256'] == file_sha256(out) and meta['precision'] == 'int8'
    assert meta['source_model']['sha256'] == file_sha256(yolo)
    q = meta['quantization']
    assert q['format'] == 'QDQ' and q['per_channel'] is True
    assert q['calibration']['frames'] + q['calibration']['held_back_frames'] == 12
    assert [c['float_head'] for c in q['selection']['candidates']] == [False, True]
    assert q['selection']['metric'] == 'agreement_f1'
    assert 0.0 <= meta['accuracy']['agreement_f1'] <= 1.0
    # The float-head candidate keeps the head's tail (last convs, sigmoids, concats) in float.
    tail = set(head_nodes(yolo))
    assert {'cat_out', 'cat_boxes', 'cat_cls'} <= tail
    assert not any(n.startswith('silu') for n in tail)
    # The pipeline's loader accepts the file, pinned by the new metadata.
    info = load_model_info(out)
    assert info.pinned and info.output_shape == (1, 8, 84)


def test_cli_quantizes_and_labels_give_map(yolo: Path, frames_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    labels = {p.name: [[10, 10, 60, 50, 1]] for p in frames_dir.glob('*.png')}
    (tmp_path / 'labels.json').write_text(json.dumps(labels))
    out = tmp_path / 'q.onnx'
    rc = main(['--model', str(yolo), '--calibration', str(frames_dir), '--out', str(out),
               '--frames', '8', '--methods', 'minmax', '--labels', str(tmp_path / 'labels.json')])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert 'minmax+float-head' in text and '<- chosen' in text
    assert json.loads((tmp_path / 'q.json').read_text())['quantization']['selection'][
        'metric'] == 'map50'


def test_each_candidate_is_run_from_its_own_file(yolo: Path, tmp_path: Path) -> None:
    # The model info holds the FP32 file's bytes, which backends load: a runner handed
    # another file must run that file (it ran the FP32 model for every candidate once, so
    # every candidate scored as FP32 and the choice fell to timing noise).
    other = make_yolov8_conv_model(tmp_path / 'other.onnx', seed=1)
    info = check_quantizable(yolo)
    x = np.random.default_rng(0).random((1, 3, 64, 64), np.float32)
    runner = _Runner(info, other)
    try:
        got = runner.backend.infer(x)
    finally:
        runner.close()
    assert np.allclose(got, _run(other, x), atol=1e-5)
    assert not np.allclose(got, _run(yolo, x), atol=1e-3)


def test_agreement_counts_same_class_overlaps() -> None:
    a = (np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.ones(2), np.array([0, 1]))
    assert agreement([a], [a]) == 1.0
    other_class = (a[0], a[1], np.array([1, 0]))
    assert agreement([a], [other_class]) == 0.0
    one = (a[0][:1], a[1][:1], a[2][:1])
    assert agreement([a], [one]) == pytest.approx(2 / 3)
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    assert agreement([empty], [empty]) == 1.0
    # Boxes without area (a flat box, a point) agree with themselves, not with each other.
    flat = (np.array([[5, 5, 5, 9], [7, 7, 7, 7]], float), np.ones(2), np.array([0, 0]))
    assert agreement([flat], [flat]) == 1.0
    assert agreement([flat], [(flat[0][::-1].copy(), flat[1], flat[2])]) == 1.0
    moved = (flat[0] + 1.0, flat[1], flat[2])
    assert agreement([flat], [moved]) == 0.0


def test_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / 'model.pt'
    path.write_bytes(b'\x80\x02torch')
    with pytest.raises(QuantizeError, match='not an ONNX file'):
        check_quantizable(path)


def test_refuses_a_corrupt_onnx_file(tmp_path: Path, yolo: Path) -> None:
    path = tmp_path / 'broken.onnx'
    path.write_bytes(yolo.read_bytes()[:500])
    with pytest.raises(QuantizeError, match='not a valid ONNX model'):
        check_quantizable(path)


def test_refuses_a_model_without_float_convolutions(tmp_path: Path) -> None:
    path, _ = make_yolov8_model(tmp_path / 'planted.onnx')
    with pytest.raises(QuantizeError, match='nothing to quantize'):
        check_quantizable(path)


def test_refuses_an_already_quantized_model(yolo: Path, frames_dir: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / 'once.onnx'
    quantize_model(yolo, frames_dir, out, frames=6, candidates=[Candidate('minmax', True)],
                   timing_runs=1)
    with pytest.raises(QuantizeError, match='already quantized'):
        check_quantizable(out)


def test_refuses_a_dynamic_input_size_without_metadata(tmp_path: Path) -> None:
    path, _ = make_yolov8_model(tmp_path / 'dyn.onnx', input_dims=[1, 3, 'h', 'w'])
    with pytest.raises(QuantizeError):
        check_quantizable(path)


def test_refuses_fp16_models(tmp_path: Path) -> None:
    path, _ = make_yolov8_model(tmp_path / 'half.onnx', dtype='float16')
    with pytest.raises(QuantizeError, match='only float32'):
        check_quantizable(path)


@pytest.mark.parametrize('kind,reason', [('missing', 'not found'), ('empty', 'holds no images'),
                                         ('bag', 'calibration bag.*cannot be read'),
                                         ('text', 'neither a folder'),
                                         ('video', 'cannot be opened')])
def test_refuses_unusable_calibration_sources(tmp_path: Path, kind: str, reason: str) -> None:
    source = tmp_path / kind
    if kind == 'empty':
        source.mkdir()
    elif kind == 'bag':
        source.mkdir()
        (source / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}')
        (source / 'bag_0.mcap').write_bytes(b'')
    elif kind == 'text':
        source = tmp_path / 'frames.txt'
        source.write_text('x')
    elif kind == 'video':
        source = tmp_path / 'clip.mp4'
        source.write_bytes(b'not a video')
    with pytest.raises(QuantizeError, match=reason):
        list(iter_frames(source, 10))


def test_cli_refusal_is_a_message_and_exit_code(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = make_yolov8_model(tmp_path / 'planted.onnx')
    rc = main(['--model', str(path), '--calibration', str(tmp_path)])
    assert rc == 2
    assert 'refused' in capsys.readouterr().out


def test_video_source_gives_frames(tmp_path: Path) -> None:
    path = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    got = list(iter_frames(path, 3))
    assert len(got) == 3 and got[0][1].shape == (48, 64, 3)


@pytest.mark.parametrize('msgtype', ['sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage'])
def test_bag_source_gives_the_recorded_frames(tmp_path: Path, msgtype: str) -> None:
    bag = write_bag(tmp_path / 'bag', frames=6, msgtype=msgtype)
    got = list(iter_frames(bag, 4))
    assert [name for name, _ in got] == [f'bag#{i}' for i in range(4)]
    assert all(image.shape == (48, 64, 3) and image.dtype == np.uint8 for _, image in got)
    if msgtype.endswith('/Image'):  # raw bgr8: frame i is filled with i
        assert [int(image[0, 0, 0]) for _, image in got] == [0, 1, 2, 3]
    else:  # a JPEG of a flat grey 90
        assert all(abs(int(image.mean()) - 90) <= 2 for _, image in got)
    assert len(list(iter_frames(storage_file(bag), 10))) == 6  # the storage file alone


def test_quantize_model_calibrates_on_a_bag(yolo: Path, tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'drive', frames=8, width=160, height=120)
    out = tmp_path / 'yolo_int8.onnx'
    assert main(['--model', str(yolo), '--calibration', str(bag), '--out', str(out),
                 '--frames', '8', '--methods', 'minmax']) == 0
    assert graph_precision(out) == 'int8'
    meta = json.loads(out.with_suffix('.json').read_text())
    assert meta['quantization']['calibration']['source'] == str(bag)


def test_a_bag_without_the_topic_asked_for_is_refused(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'bag', frames=2)
    with pytest.raises(QuantizeError, match='no topic /front'):
        list(iter_frames(bag, 2, bag_topic='/front'))


def test_int8_shorthand_names_the_shipped_int8_model() -> None:
    assert resolve_model_path('int8').endswith('detector_int8.onnx')
    assert resolve_model_path('fp32').endswith('detector.onnx')
    assert Path(resolve_model_path('int8')).is_file()


def test_evaluate_model_cli_prints_both_maps(capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate_main(['--frames', '10']) == 0
    text = capsys.readouterr().out
    assert '(fp32)' in text and 'mAP@0.5 ' in text and 'mAP@0.5:0.95' in text

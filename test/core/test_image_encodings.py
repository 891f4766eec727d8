"""The one ingest path: every camera encoding to the 8-bit image the letterbox reads."""

from __future__ import annotations

import cv2
from edge_infer_ros.core.image_encodings import (check_array, Converter, EncodingError,
                                                 image_size, raw_to_bytes, raw_view, to_bgr)
from edge_infer_ros.core.payloads import DetectionPayload
from edge_infer_ros.stages.debug_view import draw_debug_image
from edge_infer_ros.stages.preprocess import Preprocessor
import numpy as np
import pytest
from support.camera_encoder import (ALL_ENCODINGS, assert_close_to_scene, assert_same_tensor,
                                    encode, expected_tensor, mean_error, model_tensor,
                                    opencv_bgr, OPENCV_CODES, reference_scene)

SCENE = reference_scene(640, 480)
SIXTEEN = [e for e in ALL_ENCODINGS if e.endswith('16')]


def _scene_for(encoding: str) -> np.ndarray:
    """Return what a perfect decoder gives back: the scene (in grey for mono)."""
    if encoding.startswith('mono'):
        return cv2.cvtColor(cv2.cvtColor(SCENE, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return SCENE


@pytest.mark.parametrize('encoding', ALL_ENCODINGS)
@pytest.mark.parametrize('pad', [0, 6])
def test_every_encoding_gives_opencvs_conversion_then_the_same_letterbox(encoding: str,
                                                                         pad: int) -> None:
    step, data, raw = encode(SCENE, encoding, pad=pad)
    view = raw_view(480, 640, encoding, step, data)
    assert image_size(view, encoding) == (640, 480) and not view.flags.writeable
    tensor, _ = Preprocessor(320, 320, 'rgb')(view, encoding)
    assert_same_tensor(tensor, expected_tensor(raw, encoding))
    assert_close_to_scene(tensor, _scene_for(encoding), encoding)


@pytest.mark.parametrize('encoding', SIXTEEN)
def test_big_endian_16_bit_reads_the_same(encoding: str) -> None:
    step, data, raw = encode(SCENE, encoding, bigendian=True, pad=4)
    view = raw_view(480, 640, encoding, step, data, is_bigendian=1)
    np.testing.assert_array_equal(to_bgr(view, encoding), opencv_bgr(raw, encoding))
    # x257 reads the same both ways: values whose two bytes differ show the order is honoured
    values = np.random.default_rng(1).integers(0, 65536, raw.shape, np.uint16)
    big = values.astype('>u2').reshape(480, -1).tobytes()
    row = len(big) // 480
    image = to_bgr(raw_view(480, 640, encoding, row, big, is_bigendian=1), encoding)
    native = to_bgr(raw_view(480, 640, encoding, row, values.tobytes(), 0), encoding)
    np.testing.assert_array_equal(image, native)
    wrong = to_bgr(raw_view(480, 640, encoding, row, big, is_bigendian=0), encoding)
    assert not np.array_equal(wrong, image)


@pytest.mark.parametrize('encoding, wrong', [
    ('bayer_rggb8', cv2.COLOR_BayerRG2BGR), ('bayer_rggb8', cv2.COLOR_BayerGB2BGR),
    ('bayer_gbrg8', cv2.COLOR_BayerGB2BGR), ('yuyv', cv2.COLOR_YUV2BGR_UYVY),
    ('uyvy', cv2.COLOR_YUV2BGR_YUY2), ('nv12', cv2.COLOR_YUV2BGR_NV21),
    ('yuyv', cv2.COLOR_YUV2RGB_YUY2),
])
def test_a_wrong_mapping_is_caught_by_the_error_bound(encoding: str, wrong: int) -> None:
    """The 2/255 bound above tells a right mapping from a swapped one."""
    _, _, raw = encode(SCENE, encoding)
    swapped = cv2.cvtColor(raw, wrong)
    assert mean_error(model_tensor(swapped), model_tensor(SCENE)) > 2 / 255
    assert OPENCV_CODES[encoding.rstrip('8')] != wrong


def test_the_16_bit_range_is_a_setting() -> None:
    values = np.array([[0, 999, 1000, 1500, 2000, 3000]], np.uint16)
    converter = Converter(1000, 2000)
    image, order = converter(raw_view(1, 6, 'mono16', 12, values.tobytes()), 'mono16')
    assert order == 'mono' and image.tolist() == [[0, 0, 0, 128, 255, 255]]
    converter.set_range(0, 65535)
    image, _ = converter(raw_view(1, 6, 'mono16', 12, (values * 0 + 257 * 7).tobytes()),
                         'mono16')
    assert (image == 7).all()
    with pytest.raises(ValueError, match='low < high'):
        converter.set_range(5, 5)


def test_conversion_reuses_its_buffers() -> None:
    converter = Converter()
    for encoding in ('yuyv', 'nv12', 'bayer_grbg16', 'rgba16'):
        step, data, _ = encode(SCENE, encoding)
        view = raw_view(480, 640, encoding, step, data)
        first, _ = converter(view, encoding)
        allocated = converter.allocations
        second, _ = converter(view, encoding)
        assert second is first and converter.allocations == allocated


def test_eight_bit_bgr_rgb_mono_stay_zero_copy() -> None:
    for encoding in ('bgr8', 'rgb8', 'bgra8', 'rgba8', 'mono8'):
        step, data, _ = encode(SCENE, encoding)
        view = raw_view(480, 640, encoding, step, data)
        image, _ = Converter()(view, encoding)
        assert image is view and np.shares_memory(image, np.frombuffer(data, np.uint8))


@pytest.mark.parametrize('encoding', ['yuyv', 'nv21', 'mono16', 'bayer_bggr8'])
def test_raw_views_go_back_to_the_same_bytes(encoding: str) -> None:
    step, data, _ = encode(SCENE[:8, :10], encoding, bigendian=True, pad=2)
    view = raw_view(8, 10, encoding, step, data, is_bigendian=1)
    check_array(view, encoding)
    packed_step, bigendian, packed = raw_to_bytes(view)
    again = raw_view(8, 10, encoding, packed_step, packed, bigendian)
    np.testing.assert_array_equal(again, view)


@pytest.mark.parametrize('encoding, height, width, step, size, reason', [
    ('16UC1', 4, 4, 8, 32, "'16UC1' \\(a depth or float image"),
    ('32FC1', 4, 4, 16, 64, 'a depth or float image'),
    ('8UC3', 4, 4, 12, 48, 'a depth or float image'),
    ('nv24', 4, 4, 12, 48, "'nv24' \\(unknown\\): expected one of .*nv12"),
    ('nv12', 5, 4, 4, 30, 'even width and height'),
    ('nv12', 4, 5, 5, 30, 'even width and height'),
    ('nv21', 4, 4, 4, 16, 'has 16 bytes, expected step\\*height\\*3/2 = 24'),
    ('yuyv', 4, 5, 10, 40, 'even width'),
    ('uyvy', 4, 4, 6, 24, 'step 6 is smaller than the 8 bytes'),
    ('mono16', 4, 4, 9, 36, 'step 9 of 16-bit mono16 is odd'),
    ('rgb16', 4, 4, 24, 95, 'has 95 bytes, expected step\\*height = 96'),
    ('bayer_rggb8', 1, 4, 4, 4, 'at least 2x2'),
    ('bayer_gbrg16', 4, 4, 6, 24, 'smaller than the 8 bytes'),
])
def test_bad_raw_images_are_refused_with_the_reason(encoding: str, height: int, width: int,
                                                    step: int, size: int, reason: str) -> None:
    with pytest.raises(EncodingError, match=reason):
        raw_view(height, width, encoding, step, bytes(size))


def test_arrays_from_shared_memory_must_fit_their_encoding() -> None:
    check_array(np.zeros((6, 4), np.uint8), 'nv12')
    with pytest.raises(EncodingError, match='nv12 image of shape \\[7, 4\\]'):
        check_array(np.zeros((7, 4), np.uint8), 'nv12')
    with pytest.raises(EncodingError, match='16-bit'):
        check_array(np.zeros((4, 4), np.uint8), 'mono16')
    with pytest.raises(EncodingError, match='unsupported encoding'):
        check_array(np.zeros((4, 4), np.float32), '32FC1')


@pytest.mark.parametrize('encoding', ['rgb8', 'rgba8', 'mono8', 'mono16', 'yuyv', 'nv12',
                                      'bayer_gbrg16', 'bgra16'])
def test_the_debug_image_is_right_for_every_encoding(encoding: str) -> None:
    """The raw frame travels to the debug view with its encoding; it is drawn in true colour."""
    step, data, raw = encode(SCENE, encoding, bigendian=encoding.endswith('16'), pad=2)
    view = raw_view(480, 640, encoding, step, data, int(encoding.endswith('16')))
    empty = np.zeros((0, 4), np.float32)
    detections = DetectionPayload(empty, np.zeros(0, np.float32), np.zeros(0, np.int32), (),
                                  640, 480, view, image_encoding=encoding)
    canvas = draw_debug_image(detections, (), 0)
    np.testing.assert_array_equal(canvas, opencv_bgr(raw, encoding))

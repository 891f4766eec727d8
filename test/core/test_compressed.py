"""Compressed frames from a foreign driver: size, integrity and format checked before decoding."""

from __future__ import annotations

import cv2
from edge_infer_ros.core import compressed
from edge_infer_ros.core.geometry import Letterbox, letterbox_geometry
from edge_infer_ros.core.image_encodings import EncodingError
from edge_infer_ros.stages.preprocess import Preprocessor
import numpy as np
import pytest
from support.camera_encoder import (jpeg_claiming, mean_error, model_tensor, png_bomb,
                                    reference_scene)

SCENE = reference_scene(640, 480)
JPEG = cv2.imencode('.jpg', SCENE, (cv2.IMWRITE_JPEG_QUALITY, 95))[1].tobytes()
PNG = cv2.imencode('.png', SCENE)[1].tobytes()


@pytest.mark.parametrize('fmt, codec', [
    ('jpeg', 'jpeg'), ('JPG', 'jpeg'), ('png', 'png'), ('bgr8; jpeg compressed bgr8', 'jpeg'),
    ('rgb8; png compressed rgb8', 'png'), ('mono8; jpeg compressed mono8', 'jpeg'),
])
def test_both_format_spellings_are_read(fmt: str, codec: str) -> None:
    assert compressed.codec_of(fmt) == codec
    image, width, height, factor = compressed.decode(JPEG if codec == 'jpeg' else PNG, fmt)
    assert (width, height, factor) == (640, 480, 1) and image.shape == (480, 640, 3)


def test_png_is_lossless_and_jpeg_close() -> None:
    np.testing.assert_array_equal(compressed.decode(PNG, 'png')[0], SCENE)
    tensor = Preprocessor(320, 320)(compressed.decode(JPEG, 'jpeg')[0], 'bgr8')[0]
    assert mean_error(tensor, model_tensor(SCENE)) < 2 / 255


def test_the_size_is_read_from_the_header() -> None:
    assert compressed.header_size(JPEG, 'jpeg') == (640, 480)
    assert compressed.header_size(PNG, 'png') == (640, 480)
    assert compressed.header_size(png_bomb(25000, 25000), 'png') == (25000, 25000)


@pytest.mark.parametrize('data, fmt, reason, match', [
    (png_bomb(25000, 25000), 'png', 'bad_image_size', '25000x25000 is outside'),
    (jpeg_claiming(9000, 9000), 'jpeg', 'bad_image_size', '9000x9000 is outside'),
    (JPEG[:len(JPEG) // 2], 'jpeg', 'bad_compressed', 'without the end-of-image marker'),
    (JPEG[:300], 'jpeg', 'bad_compressed', 'corrupt JPEG'),
    (b'\xff\xd8' + bytes(100) + b'\xff\xd9', 'jpeg', 'bad_compressed', 'corrupt JPEG'),
    (PNG, 'jpeg', 'bad_compressed', 'not a JPEG'),
    (JPEG, 'png', 'bad_compressed', 'not a PNG'),
    (PNG[:200], 'png', 'bad_compressed', 'cannot decode png'),
    (JPEG, 'tiff', 'bad_compressed', "unsupported compressed format 'tiff'"),
    (JPEG, 'h264', 'bad_compressed', 'expected jpeg or png'),
    (JPEG, '', 'bad_compressed', 'unsupported compressed format'),
    (b'', 'jpeg', 'bad_compressed', 'not a JPEG'),
])
def test_bad_compressed_frames_are_refused_with_the_reason(data: bytes, fmt: str, reason: str,
                                                           match: str) -> None:
    with pytest.raises(EncodingError, match=match) as refused:
        compressed.decode(data, fmt)
    assert refused.value.reason == reason


@pytest.mark.parametrize('size, model, factor', [
    ((640, 480), (320, 320), 2), ((1920, 1080), (320, 320), 4), ((1920, 1080), (640, 640), 2),
    ((3840, 2160), (320, 320), 8), ((640, 480), (640, 640), 1), ((700, 500), (416, 416), 1),
])
def test_the_reduction_leaves_the_letterbox_to_shrink(size, model, factor) -> None:
    assert compressed.reduction_for(*size, model) == factor


def _area_tensor(bgr: np.ndarray, size: int) -> np.ndarray:
    """Return the ideal model tensor: the scene area-averaged (no aliasing) and letterboxed."""
    new_w, new_h, left, top, _ = letterbox_geometry(bgr.shape[1], bgr.shape[0], size, size)
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = cv2.resize(bgr, (new_w, new_h),
                                                            interpolation=cv2.INTER_AREA)
    return (canvas[:, :, ::-1].astype(np.float32) * np.float32(1 / 255)).transpose(2, 0, 1)[None]


@pytest.mark.parametrize('width, height, model, factor', [
    (1920, 1080, 320, 4), (1920, 1080, 640, 2), (640, 480, 320, 2)])
@pytest.mark.parametrize('quality', [75, 95])
def test_a_reduced_jpeg_decode_is_no_worse_than_a_full_decode_and_resize(
        width: int, height: int, model: int, factor: int, quality: int) -> None:
    scene = reference_scene(width, height)
    jpeg = cv2.imencode('.jpg', scene, (cv2.IMWRITE_JPEG_QUALITY, quality))[1].tobytes()
    reduced, sent_w, sent_h, used = compressed.decode(jpeg, 'jpeg', (model, model))
    assert used == factor and (sent_w, sent_h) == (width, height)
    assert reduced.shape == (height // factor, width // factor, 3)
    full = compressed.decode(jpeg, 'jpeg')[0]
    ideal = _area_tensor(scene, model)
    tensor_reduced, box_reduced = Preprocessor(model, model)(reduced, 'bgr8')
    tensor_full, box_full = Preprocessor(model, model)(full, 'bgr8')
    assert mean_error(tensor_reduced, ideal) <= mean_error(tensor_full, ideal)
    # The letterbox of the reduced image, divided by the factor, is the full image's.
    assert Letterbox(box_reduced.scale / factor, box_reduced.pad_x, box_reduced.pad_y) == \
        box_full

"""Image validation, letterbox preprocessing and the pooled buffers of the hot path."""

from __future__ import annotations

import cv2
from edge_infer_ros.core.geometry import letterbox_geometry
from edge_infer_ros.core.image import BufferPool, frozen_view, image_view, ImageError
from edge_infer_ros.stages.preprocess import Preprocessor
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest


def test_image_view_is_zero_copy_and_read_only() -> None:
    data = bytearray(np.arange(4 * 6 * 3, dtype=np.uint8).tobytes())
    view = image_view(4, 6, 'bgr8', 18, data)
    assert view.shape == (4, 6, 3) and not view.flags.writeable
    data[0] = 255
    assert view[0, 0, 0] == 255  # shares the buffer


def test_image_view_honours_row_padding() -> None:
    rows = [bytes(range(i * 10, i * 10 + 6)) + b'\xff\xff' for i in range(3)]  # step 8, mono8
    view = image_view(3, 6, 'mono8', 8, b''.join(rows))
    assert view.shape == (3, 6, 1)
    assert view[2, 5, 0] == 25 and (view != 255).all()


@pytest.mark.parametrize('kwargs, reason', [
    ({'encoding': 'yuv422'}, 'unsupported encoding'),
    ({'encoding': '16UC1'}, 'unsupported encoding'),
    ({'step': 10}, 'step 10 is smaller'),
    ({'data': bytes(4 * 18 - 1)}, 'expected step\\*height'),
    ({'data': bytes(4 * 18 + 7)}, 'expected step\\*height'),
    ({'height': 0}, 'zero-sized'),
    ({'width': 0}, 'zero-sized'),
    ({'height': 100_000, 'width': 100_000}, 'larger than'),
])
def test_bad_images_are_refused_with_the_reason(kwargs: dict, reason: str) -> None:
    args = {'height': 4, 'width': 6, 'encoding': 'bgr8', 'step': 18, 'data': bytes(4 * 18)}
    args.update(kwargs)
    with pytest.raises(ImageError, match=reason):
        image_view(args['height'], args['width'], args['encoding'], args['step'], args['data'])


@settings(max_examples=200, deadline=None)
@given(height=st.integers(-2, 40), width=st.integers(-2, 40),
       encoding=st.sampled_from(['bgr8', 'rgb8', 'mono8', 'rgba8', 'bgra8', 'bad', '']),
       step=st.integers(-5, 200), size=st.integers(0, 8000))
def test_image_view_fuzz_never_crashes_otherwise(height, width, encoding, step, size) -> None:
    """Any header/data combination gives a valid view or an ImageError: nothing else."""
    try:
        view = image_view(height, width, encoding, step, bytes(size))
    except ImageError:
        return
    assert view.shape[:2] == (height, width)


def test_letterbox_geometry_centres_the_image() -> None:
    new_w, new_h, left, top, letterbox = letterbox_geometry(640, 480, 320, 320)
    assert (new_w, new_h, left, top) == (320, 240, 0, 40)
    assert letterbox.scale == 0.5 and letterbox.pad_y == 40.0


def _reference(image: np.ndarray, size: int, rgb: bool) -> np.ndarray:
    """Preprocess the straightforward way users write it: several full-size copies."""
    new_w, new_h, left, top, _ = letterbox_geometry(image.shape[1], image.shape[0], size, size)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = resized
    if rgb:
        canvas = canvas[:, :, ::-1]
    return (canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]


@pytest.mark.parametrize('color_order', ['rgb', 'bgr'])
def test_preprocessor_matches_the_straightforward_version(color_order: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    tensor, letterbox = Preprocessor(320, 320, color_order)(image, 'bgr8')
    expected = _reference(image, 320, color_order == 'rgb')
    np.testing.assert_allclose(tensor, expected, atol=1e-6)
    assert letterbox.pad_y == 40.0 and not tensor.flags.writeable


def test_preprocessor_colour_orders_of_the_input() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :, 0] = 255  # blue in bgr8
    pre = Preprocessor(32, 32, 'rgb')
    tensor, _ = pre(image, 'bgr8')
    assert tensor[0, 2].min() == 1.0 and tensor[0, 0].max() == 0.0  # blue is the third plane
    tensor, _ = pre(image, 'rgb8')  # the same bytes read as rgb: red
    assert tensor[0, 0].min() == 1.0
    mono = np.full((32, 32, 1), 51, np.uint8)
    tensor, _ = pre(mono, 'mono8')
    np.testing.assert_allclose(tensor, 0.2, atol=1e-6)


def test_preprocessor_reuses_tensors_nobody_holds() -> None:
    pre = Preprocessor(64, 64)
    image = np.zeros((48, 64, 3), np.uint8)
    for _ in range(20):
        pre(image, 'bgr8')  # each result dropped at once: the pool stays small
    assert pre.tensor_allocations <= 2
    held = [pre(image, 'bgr8')[0] for _ in range(5)]  # a deep queue holds five
    assert pre.tensor_allocations >= 5
    assert len({id(t.base) for t in held}) == 5  # never handed out twice while held


def test_buffer_pool_never_reuses_a_buffer_still_referenced() -> None:
    pool = BufferPool(lambda: np.zeros(4), initial=1)
    first = pool.acquire()
    view = frozen_view(first)
    del first
    second = pool.acquire()
    assert second is not view.base  # the view keeps its buffer busy
    del view, second
    assert pool.acquire() is not None and pool.allocations == 2

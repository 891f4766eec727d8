"""The preprocess stage: letterbox, colour order, normalisation, reused tensors."""

from __future__ import annotations

import cv2
from edge_infer_ros.core.geometry import letterbox_geometry
from edge_infer_ros.stages.preprocess import Preprocessor
import numpy as np
import pytest


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


@pytest.mark.parametrize('shape', [(480, 640, 3), (640, 480, 3), (320, 320, 3)])
def test_preprocessor_fills_a_given_tensor_whatever_it_held(shape) -> None:
    """A loaned sample holds an earlier frame's bytes: the result must not show them."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    pre = Preprocessor(320, 320, 'rgb')
    out = np.full(pre.tensor_shape, np.nan, pre.tensor_dtype)
    allocations = pre.tensor_allocations
    tensor, _ = pre(image, 'bgr8', out=out)
    assert np.shares_memory(tensor, out)  # written in place: nothing to copy afterwards
    np.testing.assert_allclose(tensor, _reference(image, 320, True), atol=1e-6)
    assert pre.tensor_allocations == allocations  # the pool untouched


def test_preprocessor_refuses_a_tensor_of_another_shape_or_type() -> None:
    pre = Preprocessor(64, 64)
    image = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match='shape'):
        pre(image, 'bgr8', out=np.empty((1, 3, 64, 32), np.float32))
    with pytest.raises(ValueError, match='float32'):
        pre(image, 'bgr8', out=np.empty((1, 3, 64, 64), np.float64))


def test_a_pooled_tensor_reused_for_another_geometry_shows_no_earlier_frame() -> None:
    rng = np.random.default_rng(2)
    pre = Preprocessor(320, 320, 'rgb')
    for shape in [(480, 640, 3), (640, 480, 3), (480, 640, 3), (200, 320, 3)]:
        image = rng.integers(0, 255, shape, dtype=np.uint8)
        tensor, _ = pre(image, 'bgr8')
        np.testing.assert_allclose(tensor, _reference(image, 320, True), atol=1e-6)
        del tensor  # free for the pool: the next size reuses it

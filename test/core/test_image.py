"""Image validation and the pooled buffers of the hot path."""

from __future__ import annotations

from edge_infer_ros.core.image import BufferPool, frozen_view, ImageError
from edge_infer_ros.core.image_encodings import image_size, image_view
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
    ({'encoding': 'nv24'}, "unsupported encoding 'nv24' \\(unknown\\)"),
    ({'encoding': '16UC1'}, "unsupported encoding '16UC1' \\(a depth or float image"),
    ({'encoding': '32FC1'}, 'expected one of bgr8, .*mono16, .*yuyv, .*nv12, .*bayer_rggb8'),
    ({'step': 10}, 'step 10 is smaller'),
    ({'data': bytes(4 * 18 - 1)}, 'expected step\\*height = 72'),
    ({'data': bytes(4 * 18 + 7)}, 'expected step\\*height = 72'),
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
       encoding=st.sampled_from(['bgr8', 'rgb8', 'mono8', 'rgba8', 'bgra8', 'bad', '', 'yuyv',
                                 'uyvy', 'nv12', 'nv21', 'mono16', 'rgba16',
                                 'bayer_gbrg8', 'bayer_bggr16', '16UC1']),
       step=st.integers(-5, 200), size=st.integers(0, 8000))
def test_image_view_fuzz_never_crashes_otherwise(height, width, encoding, step, size) -> None:
    """Any header/data combination gives a valid view or an ImageError: nothing else."""
    try:
        view = image_view(height, width, encoding, step, bytes(size), size % 2)
    except ImageError:
        return
    assert image_size(view, encoding) == (width, height)


def test_buffer_pool_never_reuses_a_buffer_still_referenced() -> None:
    pool = BufferPool(lambda: np.zeros(4), initial=1)
    first = pool.acquire()
    view = frozen_view(first)
    del first
    second = pool.acquire()
    assert second is not view.base  # the view keeps its buffer busy
    del view, second
    assert pool.acquire() is not None and pool.allocations == 2

"""
Every camera encoding in, one 8-bit image out: the single ingest path of the pipeline.

A frame enters (camera node's ``topic`` source, preprocess input, shared memory) as a
read-only view of the driver's buffer with its ROS encoding (:func:`raw_view`): no pixel is
copied there. It is converted once, in the preprocess stage, by :class:`Converter` into
buffers it reuses: 8-bit BGR/RGB/mono stay as they are, the others become 8-bit images the
letterbox reads. Why plain: drivers send anything, and each refusal must say what came and
what is accepted; none of it needs ROS.

OpenCV names Bayer patterns by the second row's first two pixels, so ROS ``bayer_rggb8``
is OpenCV's ``BayerBG``; its YUV conversions are BT.601 limited range, as cameras send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import cv2
from edge_infer_ros.core.image import ImageError, MAX_PIXELS
from edge_infer_ros.core.validate import InputRefused
import numpy as np


class EncodingError(InputRefused, ImageError):
    """
    An image that cannot be used, with the reason, counted per kind (a key of REASONS).

    ``unsupported_encoding``: a name not accepted (depth, float, unknown); ``bad_image_size``:
    a size the layout cannot have or above MAX_PIXELS; ``bad_image_data``: step and data that
    do not fit the size; ``bad_compressed``: compressed data that cannot be trusted.
    """

    def __init__(self, detail: str, reason: str = 'bad_image_size') -> None:
        InputRefused.__init__(self, reason, detail)


@dataclass(frozen=True)
class Encoding:
    """How one ROS encoding is laid out and what it becomes."""

    #: 'direct' (8-bit BGR/RGB/mono: used as is), 'bits16' (16-bit: scaled to 8),
    #: 'yuv422' (packed, 2 bytes a pixel), 'yuv420sp' (NV12/NV21), 'bayer'
    layout: str
    #: elements per pixel of the raw view
    channels: int
    #: bytes per element (1 or 2)
    depth: int
    #: colour order of the 8-bit image it becomes: 'bgr', 'rgb' or 'mono'
    order: str
    #: OpenCV colour conversion to 8-bit BGR (-1: none)
    code: int = -1


def _bayer(code8: int) -> tuple[Encoding, Encoding]:
    return Encoding('bayer', 1, 1, 'bgr', code8), Encoding('bayer', 1, 2, 'bgr', code8)


_BAYER = {'rggb': cv2.COLOR_BayerBG2BGR, 'bggr': cv2.COLOR_BayerRG2BGR,
          'gbrg': cv2.COLOR_BayerGR2BGR, 'grbg': cv2.COLOR_BayerGB2BGR}

#: Every encoding accepted, by ROS name (both spellings of the YUV ones since Humble).
ENCODINGS: dict[str, Encoding] = {
    'bgr8': Encoding('direct', 3, 1, 'bgr'),
    'rgb8': Encoding('direct', 3, 1, 'rgb'),
    'bgra8': Encoding('direct', 4, 1, 'bgr'),
    'rgba8': Encoding('direct', 4, 1, 'rgb'),
    'mono8': Encoding('direct', 1, 1, 'mono'),
    'mono16': Encoding('bits16', 1, 2, 'mono'),
    'bgr16': Encoding('bits16', 3, 2, 'bgr'),
    'rgb16': Encoding('bits16', 3, 2, 'rgb'),
    'bgra16': Encoding('bits16', 4, 2, 'bgr'),
    'rgba16': Encoding('bits16', 4, 2, 'rgb'),
    'yuyv': Encoding('yuv422', 2, 1, 'bgr', cv2.COLOR_YUV2BGR_YUY2),
    'yuv422_yuy2': Encoding('yuv422', 2, 1, 'bgr', cv2.COLOR_YUV2BGR_YUY2),
    'uyvy': Encoding('yuv422', 2, 1, 'bgr', cv2.COLOR_YUV2BGR_UYVY),
    'yuv422': Encoding('yuv422', 2, 1, 'bgr', cv2.COLOR_YUV2BGR_UYVY),
    'nv12': Encoding('yuv420sp', 1, 1, 'bgr', cv2.COLOR_YUV2BGR_NV12),
    'nv21': Encoding('yuv420sp', 1, 1, 'bgr', cv2.COLOR_YUV2BGR_NV21),
}
for _pattern, _code in _BAYER.items():
    ENCODINGS[f'bayer_{_pattern}8'], ENCODINGS[f'bayer_{_pattern}16'] = _bayer(_code)

#: Encodings that are not camera images (depth, float, generic OpenCV types): named in refusals.
_NOT_CAMERA = ('16UC1', '32FC1', '8UC3', '64FC1', '16SC1')


def describe_accepted() -> str:
    """Return the accepted encodings, for refusal messages."""
    return ', '.join(ENCODINGS)


def encoding_of(name: str) -> Encoding:
    """Return the layout of encoding ``name``, or raise EncodingError naming what is accepted."""
    spec = ENCODINGS.get(name)
    if spec is not None:
        return spec
    what = ('a depth or float image, not a camera image'
            if name[:1].isdigit() or name.upper() in _NOT_CAMERA else 'unknown')
    raise EncodingError(f'unsupported encoding {name[:64]!r} ({what}): expected one of '
                        f'{describe_accepted()}', 'unsupported_encoding')


def _raw_shape(spec: Encoding, name: str, height: int, width: int) -> tuple[int, ...]:
    """Shape of the raw view of a width x height image (refusing sizes the layout cannot have)."""
    if height <= 0 or width <= 0:
        raise EncodingError(f'zero-sized image {width}x{height}')
    if height * width > MAX_PIXELS:
        raise EncodingError(f'image {width}x{height} is larger than the {MAX_PIXELS} pixels '
                            'accepted')
    if spec.layout == 'yuv422' and width % 2:
        raise EncodingError(f'{name} needs an even width (two pixels share U and V), got '
                            f'{width}x{height}')
    if spec.layout == 'yuv420sp':
        if width % 2 or height % 2:
            raise EncodingError(f'{name} needs an even width and height (four pixels share U '
                                f'and V), got {width}x{height}')
        return (height * 3 // 2, width)
    if spec.layout == 'bayer' and (width < 2 or height < 2):
        raise EncodingError(f'{name} needs at least 2x2 pixels, got {width}x{height}')
    if spec.channels == 1 and spec.layout != 'direct':
        return (height, width)
    return (height, width, spec.channels)


def raw_view(height: int, width: int, encoding: str, step: int, data: Any,
             is_bigendian: int = 0) -> np.ndarray:
    """
    Return a read-only view of a raw image buffer in its encoding, or raise EncodingError.

    No pixel is copied: the view points into ``data`` (e.g. ``sensor_msgs/Image.data``).
    Shape: (H, W, C) for 8-bit BGR/RGB/mono (as the letterbox reads them), (H, W[, C]) for the
    others, (H * 3 / 2, W) for NV12/NV21 (the Y plane then the
    interleaved chroma plane, as OpenCV reads them); 16-bit ones have the message's byte
    order. Rows padded beyond the pixels (``step`` larger) are handled by striding.
    """
    spec = encoding_of(encoding)
    shape = _raw_shape(spec, encoding, height, width)
    row_bytes = width * spec.channels * spec.depth
    if step < row_bytes:
        raise EncodingError(f'step {step} is smaller than the {row_bytes} bytes of a '
                            f'{width}-pixel row of {encoding}', 'bad_image_data')
    if spec.depth == 2 and step % 2:
        raise EncodingError(f'step {step} of 16-bit {encoding} is odd: rows would split '
                            'their pixels', 'bad_image_data')
    buffer = np.frombuffer(data, dtype=np.uint8)
    expected = step * shape[0]
    if buffer.size != expected:
        rows = 'step*height*3/2' if spec.layout == 'yuv420sp' else 'step*height'
        raise EncodingError(f'data has {buffer.size} bytes, expected {rows} = {expected} '
                            f'({width}x{height} {encoding}, step {step})', 'bad_image_data')
    dtype = np.dtype(np.uint8) if spec.depth == 1 else np.dtype('>u2' if is_bigendian
                                                                else '<u2')
    strides = (step, spec.channels * spec.depth, spec.depth)[:len(shape)]
    view: np.ndarray = np.ndarray(shape, dtype, buffer=buffer, strides=strides)
    view.setflags(write=False)
    return view


def image_size(raw: np.ndarray, encoding: str) -> tuple[int, int]:
    """(width, height) in pixels of a raw view in ``encoding``."""
    rows, width = raw.shape[:2]
    if ENCODINGS[encoding].layout == 'yuv420sp':
        return width, rows * 2 // 3
    return width, rows


def output_channels(encoding: str) -> int:
    """Channels of the 8-bit image an encoding becomes (3 for YUV and Bayer)."""
    spec = encoding_of(encoding)
    return 3 if spec.layout in ('yuv422', 'yuv420sp', 'bayer') else spec.channels


def check_array(raw: np.ndarray, encoding: str) -> None:
    """Refuse an array that cannot be a raw view of ``encoding`` (e.g. from shared memory)."""
    spec = encoding_of(encoding)
    if raw.ndim not in (2, 3):
        raise EncodingError(f'{encoding} image with {raw.ndim} dimensions')
    width, height = image_size(raw, encoding)
    shape = _raw_shape(spec, encoding, height, width)
    dtype_ok = raw.dtype == np.uint8 if spec.depth == 1 else raw.dtype in (
        np.dtype('<u2'), np.dtype('>u2'))
    if raw.shape != shape or not dtype_ok:
        raise EncodingError(f'{encoding} image of shape {list(raw.shape)} {raw.dtype}, '
                            f'expected {list(shape)} of {spec.depth * 8}-bit elements')


def raw_to_bytes(raw: np.ndarray) -> tuple[int, int, bytes]:
    """(step, is_bigendian, data) of a raw view, rows packed: what a sensor_msgs/Image holds."""
    row = raw.shape[1] * (raw.shape[2] if raw.ndim == 3 else 1) * raw.dtype.itemsize
    return row, int(raw.dtype.byteorder == '>'), np.ascontiguousarray(raw).tobytes()


class Converter:
    """
    Raw views to 8-bit images, into buffers reused frame after frame.

    ``low``/``high``: the 16-bit values mapped to 0 and 255 (full range by default; a thermal
    camera's scene may span a few hundred counts). The image returned is one of this
    converter's buffers (or the input itself for 8-bit BGR/RGB/mono): valid until the next
    call, so the caller uses it before converting the next frame.
    """

    def __init__(self, low: int = 0, high: int = 65535) -> None:
        self._buffers: dict[tuple[str, tuple[int, ...], str], np.ndarray] = {}
        self.set_range(low, high)

    def set_range(self, low: int, high: int) -> None:
        """Map 16-bit ``low``..``high`` to 0..255 from the next frame on."""
        if not 0 <= low < high <= 65535:
            raise ValueError(f'16-bit range must satisfy 0 <= low < high <= 65535, got '
                             f'{low}..{high}')
        self.low, self.high = low, high

    @property
    def allocations(self) -> int:
        """Buffers allocated so far (flat in steady state: one set per geometry)."""
        return len(self._buffers)

    def _buffer(self, role: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        key = (role, shape, np.dtype(dtype).str)
        buffer = self._buffers.get(key)
        if buffer is None:
            if len(self._buffers) > 16:  # a camera changing size: keep the set bounded
                self._buffers.clear()
            buffer = self._buffers[key] = np.empty(shape, dtype)
        return buffer

    def __call__(self, raw: np.ndarray, encoding: str,
                 size: Optional[tuple[int, int]] = None) -> tuple[np.ndarray, str]:
        """
        Return (8-bit image of shape (H, W[, C]), its colour order) for a raw view.

        ``size``: the (w, h) the caller resizes to next. A 16-bit BGR/RGB/mono frame larger
        than that is resized here first, at 16 bits, and converted to 8 at that size: a
        fraction of the pixels, and no precision lost before the interpolation.
        """
        spec = encoding_of(encoding)
        if spec.layout == 'direct':
            return raw, spec.order
        if spec.layout == 'bits16' and size is not None and size != image_size(raw, encoding):
            shape = (size[1], size[0]) + raw.shape[2:]
            small = self._buffer('small', shape, np.uint16)
            cv2.resize(self._native(raw), size, dst=small, interpolation=cv2.INTER_LINEAR)
            return self._to_8bit(small), spec.order
        if spec.layout in ('yuv422', 'yuv420sp'):
            width, height = image_size(raw, encoding)
            out = self._buffer('bgr', (height, width, 3))
            cv2.cvtColor(raw, spec.code, dst=out)
            return out, spec.order
        eight = raw if spec.depth == 1 else self._to_8bit(raw)
        if spec.layout == 'bayer':
            out = self._buffer('bgr', eight.shape[:2] + (3,))
            cv2.cvtColor(eight, spec.code, dst=out)
            return out, spec.order
        return eight, spec.order

    def _native(self, raw: np.ndarray) -> np.ndarray:
        """Return 16-bit elements in this machine's byte order (OpenCV reads no other)."""
        if raw.dtype.byteorder in ('=', '|') or raw.dtype.isnative:
            return raw
        native = self._buffer('swap', raw.shape, np.uint16)
        np.copyto(native, raw)  # numpy swaps the bytes
        return native

    def _to_8bit(self, raw: np.ndarray) -> np.ndarray:
        """16-bit to 8-bit over [low, high], rounding, saturating outside it."""
        source = self._native(raw)
        out = self._buffer('eight', raw.shape, np.uint8)
        if self.low:
            shifted = self._buffer('shift', raw.shape, np.uint16)
            cv2.subtract(source, _scalar(self.low, raw), dst=shifted)  # saturates at 0
            source = shifted
        cv2.convertScaleAbs(source, out, alpha=255.0 / (self.high - self.low))
        return out


def _scalar(value: int, raw: np.ndarray) -> Any:
    """Return ``value`` as a scalar OpenCV applies to every channel of ``raw``."""
    return float(value) if raw.ndim == 2 else (float(value),) * 4


def to_bgr(raw: np.ndarray, encoding: str,
           converter: Optional[Converter] = None) -> np.ndarray:
    """Return a new (H, W, 3) BGR copy of a raw view (off the hot path: debug, JPEG out)."""
    image, order = (converter or Converter())(raw, encoding)
    if order == 'mono':
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    if order == 'rgb':
        return np.ascontiguousarray(image[:, :, 2::-1])
    return np.array(image[:, :, :3])


def image_view(height: int, width: int, encoding: str, step: int, data: Any,
               is_bigendian: int = 0) -> np.ndarray:
    """
    Return a read-only view of a raw image buffer in any accepted encoding, or raise ImageError.

    No pixel is copied. 8-bit BGR/RGB/mono give (H, W, C) uint8 as they always did; the others
    are described in :func:`raw_view` (the one ingest path).
    """
    return raw_view(height, width, encoding, step, data, is_bigendian)

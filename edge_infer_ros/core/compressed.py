"""
JPEG and PNG frames from a foreign driver: checked before they are decoded.

A compressed frame is a few hundred kB that may decode to gigabytes (a 608 kB PNG of
25000x25000), or be cut short (libjpeg then fills the rest grey and only warns). So the size
is read from the header (JPEG SOF, PNG IHDR) and refused above the raw-image limit before any
decoding, a JPEG must end with its EOI marker, and a frame OpenCV cannot decode is refused.
A JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling when the model needs no
more: cheaper than a full decode and an anti-aliased reduction. Why plain: untrusted bytes in,
an image or a reason out; no ROS.
"""

from __future__ import annotations

import struct
from typing import Optional

import cv2
from edge_infer_ros.core.geometry import letterbox_geometry
from edge_infer_ros.core.image import MAX_PIXELS
from edge_infer_ros.core.image_encodings import EncodingError
import numpy as np

#: Codecs accepted, as ``format`` names them (plain, or image_transport's "<enc>; jpeg ...").
FORMATS = ('jpeg', 'png')
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))


def _refuse(detail: str, reason: str = 'bad_compressed') -> EncodingError:
    return EncodingError(detail, reason)


def codec_of(fmt: str) -> str:
    """
    Return 'jpeg' or 'png' for a CompressedImage ``format``, or raise EncodingError.

    Read as image_transport writes it (``"bgr8; jpeg compressed bgr8"``, ``"rgb8; png
    compressed ..."``) and as drivers do (``jpeg``, ``jpg``, ``png``, any case).
    """
    words = fmt.lower().replace(';', ' ').split()
    for word in words:
        if word in ('jpeg', 'jpg', 'mjpeg'):
            return 'jpeg'
        if word == 'png':
            return 'png'
    raise _refuse(f'unsupported compressed format {fmt[:64]!r}: expected jpeg or png (plain, '
                  "or image_transport's \"<encoding>; jpeg compressed <encoding>\")")


def header_size(data: bytes, codec: str) -> tuple[int, int]:
    """Return (width, height) from the JPEG SOF or PNG IHDR, without decoding any pixel."""
    if codec == 'png':
        if data[:8] != _PNG_MAGIC or data[12:16] != b'IHDR' or len(data) < 24:
            raise _refuse('data is not a PNG (no PNG signature and IHDR)')
        width, height = struct.unpack('>II', data[16:24])
        return width, height
    if data[:2] != b'\xff\xd8':
        raise _refuse('data is not a JPEG (no SOI marker)')
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            raise _refuse(f'corrupt JPEG: no marker at byte {index}')
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        length = struct.unpack('>H', data[index + 2:index + 4])[0]
        if marker in _JPEG_SOF:
            if index + 9 > len(data):
                break
            height, width = struct.unpack('>HH', data[index + 5:index + 9])
            return width, height
        if marker == 0xDA or length < 2:
            break  # scan data before any frame header
        index += 2 + length
    raise _refuse('corrupt JPEG: no frame header (SOF) before the image data')


def reduction_for(width: int, height: int, model: Optional[tuple[int, int]]) -> int:
    """
    Return the largest libjpeg scale-down (1, 2, 4, 8) that still leaves the letterbox to shrink.

    ``model``: the model input (w, h) the frame is letterboxed into; None: no reduction.
    """
    if model is None:
        return 1
    new_w, new_h = letterbox_geometry(width, height, model[0], model[1])[:2]
    for factor, _ in _REDUCED:
        if width // factor >= new_w and height // factor >= new_h:
            return factor
    return 1


def decode(data: bytes, fmt: str, model: Optional[tuple[int, int]] = None
           ) -> tuple[np.ndarray, int, int, int]:
    """
    Decode a compressed frame: (BGR image, width, height as sent, scale-down used).

    ``model``: the model input (w, h) the frame is letterboxed into; a JPEG is then decoded at
    the largest 1/2, 1/4, 1/8 scale still at least as large as the letterboxed image.
    """
    codec = codec_of(fmt)
    width, height = header_size(data, codec)
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise _refuse(f'compressed {codec} of {width}x{height} is outside 1..{MAX_PIXELS} '
                      'pixels: refused before decoding', 'bad_image_size')
    if codec == 'jpeg' and not data.rstrip(b'\x00').endswith(b'\xff\xd9'):
        raise _refuse(f'corrupt JPEG: {len(data)} bytes without the end-of-image marker '
                      '(cut short)')
    factor = reduction_for(width, height, model) if codec == 'jpeg' else 1
    flag = dict(_REDUCED).get(factor, cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise _refuse(f'cannot decode {codec} ({len(data)} bytes, format {fmt[:64]!r})')
    expected = (-(-height // factor), -(-width // factor))
    if image.shape[:2] != expected:
        raise _refuse(f'{codec} decoded to {image.shape[1]}x{image.shape[0]}, its header '
                      f'says {width}x{height}')
    return image, width, height, factor

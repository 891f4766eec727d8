"""
A camera driver's side of every encoding, written independently of the package.

YUV from the BT.601 limited-range equations (chroma averaged over the pixels that share it),
Bayer by sampling the scene at each photosite, 16-bit by x257 (big-endian on request), rows
padded when asked. The tests compare what the package makes of these bytes with the scene.
"""

from __future__ import annotations

import struct
import zlib

import cv2
from edge_infer_ros.core.geometry import letterbox_geometry
import numpy as np

#: ROS Bayer pattern -> the colour (BGR index) of photosites (0,0), (0,1), (1,0), (1,1)
BAYER_SITES = {'rggb': (2, 1, 1, 0), 'bggr': (0, 1, 1, 2), 'gbrg': (1, 0, 2, 1),
               'grbg': (1, 2, 0, 1)}

#: OpenCV's code for each ROS Bayer pattern (OpenCV names the second row), and YUV codes:
#: the test's own table, not the package's.
OPENCV_CODES = {
    'bayer_rggb': cv2.COLOR_BayerBG2BGR, 'bayer_bggr': cv2.COLOR_BayerRG2BGR,
    'bayer_gbrg': cv2.COLOR_BayerGR2BGR, 'bayer_grbg': cv2.COLOR_BayerGB2BGR,
    'yuyv': cv2.COLOR_YUV2BGR_YUY2, 'yuv422_yuy2': cv2.COLOR_YUV2BGR_YUY2,
    'uyvy': cv2.COLOR_YUV2BGR_UYVY, 'yuv422': cv2.COLOR_YUV2BGR_UYVY,
    'nv12': cv2.COLOR_YUV2BGR_NV12, 'nv21': cv2.COLOR_YUV2BGR_NV21,
}

#: Every encoding a camera may send that the package accepts.
ALL_ENCODINGS = ('bgr8', 'rgb8', 'bgra8', 'rgba8', 'mono8', 'mono16', 'bgr16', 'rgb16',
                 'bgra16', 'rgba16', 'yuyv', 'yuv422_yuy2', 'uyvy', 'yuv422', 'nv12', 'nv21',
                 *(f'bayer_{p}{b}' for p in BAYER_SITES for b in (8, 16)))

#: Encodings whose bytes hold the scene exactly (the rest subsample colour).
LOSSLESS = ('bgr8', 'rgb8', 'bgra8', 'rgba8', 'mono8', 'mono16', 'bgr16', 'rgb16', 'bgra16',
            'rgba16')


def reference_scene(width: int = 640, height: int = 480) -> np.ndarray:
    """Return a BGR scene with smooth gradients and large flat patches, as a camera sees a room."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = np.empty((height, width, 3), np.float32)
    scene[..., 0] = 40 + 160 * x / width
    scene[..., 1] = 30 + 180 * y / height
    scene[..., 2] = 120 + 90 * np.sin(x / 57.0) * np.cos(y / 43.0)
    image = np.clip(scene, 0, 255).astype(np.uint8)
    for index, (x0, y0, x1, y1) in enumerate(((60, 50, 260, 200), (350, 220, 600, 430),
                                              (100, 300, 250, 450))):
        image[y0 * height // 480:y1 * height // 480, x0 * width // 640:x1 * width // 640] = \
            ((200, 40, 30), (20, 180, 60), (30, 60, 220))[index]
    return image


def _yuv(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited range: Y in 16..235, U/V in 16..240 (float, full resolution)."""
    b, g, r = (bgr[..., i].astype(np.float64) / 255.0 for i in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return y, u, v


def _byte(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def pixels(scene: np.ndarray, encoding: str) -> np.ndarray:
    """Return the raw elements of ``scene`` in ``encoding`` (native byte order), rows unpadded."""
    height, width = scene.shape[:2]
    base = encoding.rstrip('0123456789')
    sixteen = encoding.endswith('16')
    if encoding.startswith('bayer_'):
        sites = BAYER_SITES[encoding[6:10]]
        raw = np.empty((height, width), np.uint8)
        for index, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            raw[dy::2, dx::2] = scene[dy::2, dx::2, sites[index]]
    elif base in ('bgr', 'rgb', 'bgra', 'rgba', 'mono'):
        if base == 'mono':
            raw = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)
        else:
            raw = scene[..., ::-1] if base.startswith('rgb') else scene
            if base.endswith('a'):
                alpha = np.full((height, width, 1), 255, np.uint8)
                raw = np.concatenate([raw, alpha], axis=2)
            raw = np.ascontiguousarray(raw)
    else:
        y, u, v = _yuv(scene)
        if encoding in ('nv12', 'nv21'):
            u4 = u.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
            v4 = v.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
            chroma = np.stack([u4, v4] if encoding == 'nv12' else [v4, u4], axis=2)
            raw = np.concatenate([_byte(y), _byte(chroma).reshape(height // 2, width)])
        else:
            u2 = u.reshape(height, width // 2, 2).mean(axis=2)
            v2 = v.reshape(height, width // 2, 2).mean(axis=2)
            y2 = _byte(y).reshape(height, width // 2, 2)
            if encoding in ('yuyv', 'yuv422_yuy2'):
                quads = (y2[..., 0], _byte(u2), y2[..., 1], _byte(v2))
            else:
                quads = (_byte(u2), y2[..., 0], _byte(v2), y2[..., 1])
            raw = np.stack(quads, axis=2).reshape(height, width, 2)
    return raw.astype(np.uint16) * 257 if sixteen else raw


def encode(scene: np.ndarray, encoding: str, bigendian: bool = False,
           pad: int = 0) -> tuple[int, bytes, np.ndarray]:
    """Return (step, data, raw elements) of ``scene`` as a driver sends it, ``pad`` bytes a row."""
    raw = pixels(scene, encoding)
    stored = raw.astype('>u2') if bigendian and raw.dtype == np.uint16 else raw
    rows = stored.reshape(raw.shape[0], -1).view(np.uint8)
    padded = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
    padded[:, :rows.shape[1]] = rows
    return padded.shape[1], padded.tobytes(), raw


def opencv_bgr(raw: np.ndarray, encoding: str) -> np.ndarray:
    """Decode independently with OpenCV of the raw elements to 8-bit BGR (or grey)."""
    eight = (raw // 257).astype(np.uint8) if raw.dtype == np.uint16 else raw
    name = encoding.rstrip('0123456789') if encoding.startswith('bayer_') else encoding
    if name in OPENCV_CODES:
        return cv2.cvtColor(eight, OPENCV_CODES[name])
    base = encoding.rstrip('0123456789')
    if base == 'mono':
        return cv2.cvtColor(eight, cv2.COLOR_GRAY2BGR)
    bgr = eight[..., :3]
    return np.ascontiguousarray(bgr[..., ::-1] if base.startswith('rgb') else bgr)


def model_tensor(bgr: np.ndarray, size: int = 320) -> np.ndarray:
    """Return the letterboxed RGB model tensor of a BGR image, the plain way."""
    new_w, new_h, left, top, _ = letterbox_geometry(bgr.shape[1], bgr.shape[0], size, size)
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = cv2.resize(bgr, (new_w, new_h),
                                                            interpolation=cv2.INTER_LINEAR)
    rgb = canvas[:, :, ::-1].astype(np.float32) * np.float32(1 / 255)  # as the stage scales
    return rgb.transpose(2, 0, 1)[None]


def assert_same_tensor(tensor: np.ndarray, expected: np.ndarray) -> None:
    """Identical 8-bit values (the stage's 1/255 and pad rounding differ by 1 ulp)."""
    np.testing.assert_array_equal(np.rint(tensor * 255), np.rint(expected * 255))


def mean_error(tensor: np.ndarray, expected: np.ndarray) -> float:
    """Mean absolute difference of two tensors, counted in whole 8-bit steps."""
    return float(np.abs(np.rint(tensor * 255) - np.rint(expected * 255)).mean() / 255)


def assert_close_to_scene(tensor: np.ndarray, scene: np.ndarray, encoding: str) -> None:
    """
    Check the tensor of an encoded scene against the scene's own: the accuracy owed.

    8-bit lossless encodings are exact; 16-bit ones are interpolated at 16 bits and rounded
    once, at the end; subsampled YUV, Bayer and JPEG stay under 2/255 on average.
    """
    error = mean_error(tensor, model_tensor(scene))
    if encoding in LOSSLESS and encoding.endswith('8'):
        assert error == 0.0
    elif encoding in LOSSLESS:
        assert error < 0.2 / 255, f'{encoding}: mean error {error * 255:.2f}/255'
    else:
        assert error < 2 / 255, f'{encoding}: mean error {error * 255:.2f}/255'


def expected_tensor(raw: np.ndarray, encoding: str, size: int = 320) -> np.ndarray:
    """
    Return OpenCV's conversion of the raw elements followed by the letterbox, as a tensor.

    16-bit BGR/RGB/mono are letterboxed at 16 bits and then scaled to 8 (what a careful
    reader does: no precision dropped before the interpolation); the others are converted to
    8-bit BGR at full size first.
    """
    if raw.dtype != np.uint16 or encoding.startswith('bayer_'):
        return model_tensor(opencv_bgr(raw, encoding), size)
    new_w, new_h = letterbox_geometry(raw.shape[1], raw.shape[0], size, size)[:2]
    small = cv2.resize(raw, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return model_tensor(opencv_bgr(np.asarray(cv2.convertScaleAbs(small, alpha=1 / 257),
                                              np.uint16) * 257, encoding), size)


def png_bomb(width: int, height: int) -> bytes:
    """Return a small PNG whose header claims width x height of grey (mostly zeros)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack('>I', len(body)) + kind + body + \
            struct.pack('>I', zlib.crc32(kind + body) & 0xffffffff)
    rows = zlib.compress(bytes(4000), 9)  # far fewer rows than claimed: never decoded anyway
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0,
                                                              0, 0, 0)) +
            chunk(b'IDAT', rows) + chunk(b'IEND', b''))


def jpeg_claiming(width: int, height: int) -> bytes:
    """Return a real JPEG whose SOF says width x height (what a decoder would allocate)."""
    data = bytearray(cv2.imencode('.jpg', reference_scene(16, 16))[1].tobytes())
    index = 2
    while data[index + 1] not in (0xC0, 0xC1, 0xC2):
        index += 2 + struct.unpack('>H', data[index + 2:index + 4])[0]
    data[index + 5:index + 9] = struct.pack('>HH', height, width)
    return bytes(data)

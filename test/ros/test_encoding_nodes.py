"""
Every camera encoding from another process, through real DDS, to the model tensor.

A foreign driver (a node in its own context) publishes one reference scene in every encoding,
encoded by test/support/camera_encoder.py (independent of the package); the tensor the
preprocess stage publishes is compared with OpenCV's conversion of the same bytes followed
by the same letterbox, and with the scene itself.
"""

from __future__ import annotations

import time
from typing import Iterator, Optional

from edge_infer_ros.ros import convert
from edge_infer_ros.stages.camera import FrameSource
from edge_infer_ros_msgs.msg import TensorFrame
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from support.camera_encoder import (ALL_ENCODINGS, assert_close_to_scene, assert_same_tensor,
                                    encode, expected_tensor, mean_error, model_tensor,
                                    opencv_bgr, reference_scene)
from support.outside import Outside

SCENE = reference_scene(640, 480)
#: (encoding, big-endian, row padding): every encoding, the 16-bit ones big-endian too
CASES = [(e, False, 8 if i % 2 else 0) for i, e in enumerate(ALL_ENCODINGS)] + \
    [(e, True, 4) for e in ALL_ENCODINGS if e.endswith('16')]


@pytest.fixture
def outside(second_context) -> Iterator[Outside]:
    o = Outside(second_context, 'foreign_driver')
    yield o
    o.close()


class Driver:
    """The foreign camera driver: publishes frames, reads back tensors and republished images."""

    def __init__(self, outside: Outside, topic: str) -> None:
        self.outside = outside
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.publisher = outside.node.create_publisher(Image, topic, qos)
        self.tensors: dict[int, TensorFrame] = {}
        self.images: dict[int, Image] = {}
        outside.node.create_subscription(TensorFrame, 'tensor', self._on_tensor, qos)
        outside.node.create_subscription(Image, 'image_raw', self._on_image, qos)
        assert outside.spin_until(lambda: self.publisher.get_subscription_count() > 0, 10.0)

    def _on_tensor(self, msg: TensorFrame) -> None:
        self.tensors[convert.stamp_to_ns(msg.header.stamp)] = msg

    def _on_image(self, msg: Image) -> None:
        self.images[convert.stamp_to_ns(msg.header.stamp)] = msg

    def send(self, encoding: str, bigendian: bool, pad: int,
             republished: bool = False) -> tuple[np.ndarray, np.ndarray, Optional[Image]]:
        """Publish the scene until its tensor comes back: (tensor, raw elements, image_raw)."""
        step, data, raw = encode(SCENE, encoding, bigendian, pad)
        msg = Image(height=480, width=640, encoding=encoding, is_bigendian=int(bigendian),
                    step=step, data=data)
        msg.header.frame_id = 'foreign_camera'
        sent: list[int] = []

        def back() -> Optional[int]:
            return next((s for s in sent if s in self.tensors and
                         (not republished or s in self.images)), None)

        def publish() -> bool:
            if back() is None and (not sent or time.time_ns() - sent[-1] > 200_000_000):
                sent.append(time.time_ns())  # again, newly stamped, until one comes back
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(sent[-1], 10**9)
                self.publisher.publish(msg)
            return back() is not None

        assert self.outside.spin_until(publish, 30.0), f'no tensor for {encoding}'
        stamp = back()
        assert stamp is not None
        tensor = np.frombuffer(self.tensors[stamp].data, np.float32).reshape(
            tuple(self.tensors[stamp].shape))
        return tensor, raw, self.images.get(stamp)


def _check(tensor: np.ndarray, raw: np.ndarray, encoding: str) -> None:
    assert tensor.shape == (1, 3, 320, 320)  # the planted model's input
    assert_same_tensor(tensor, expected_tensor(raw, encoding))
    scene = opencv_bgr(encode(SCENE, 'mono8')[2], 'mono8') if encoding.startswith('mono') \
        else SCENE
    assert_close_to_scene(tensor, scene, encoding)


def test_every_encoding_into_the_preprocess_input(composed, outside) -> None:
    composed(frames=0, names={'preprocess'})
    driver = Driver(outside, 'image_raw')
    for encoding, bigendian, pad in CASES:
        tensor, raw, _ = driver.send(encoding, bigendian, pad)
        _check(tensor, raw, encoding)


def test_every_encoding_through_the_camera_topic_source(composed, outside) -> None:
    """The camera relays the frame as it came (its encoding too); preprocess converts it."""
    _, nodes = composed(frames=0, names={'camera', 'preprocess'},
                        overrides={'camera': {'source': 'topic'}})
    driver = Driver(outside, 'image_in')
    for encoding, bigendian, pad in CASES:
        tensor, raw, image = driver.send(encoding, bigendian, pad, republished=True)
        _check(tensor, raw, encoding)
        assert image is not None and image.encoding == encoding
        assert (image.width, image.height) == (640, 480)
        elements = raw.astype('>u2' if image.is_bigendian else '<u2') \
            if raw.dtype == np.uint16 else raw
        assert bytes(image.data) == elements.tobytes()  # republished as it came, unpadded
    assert nodes['camera'].error_count() == 0


@pytest.mark.parametrize('codec, fmt', [
    ('png', 'png'), ('png', 'rgb8; png compressed bgr8'),
    ('jpeg', 'jpeg'), ('jpeg', 'bgr8; jpeg compressed bgr8')])
def test_compressed_frames_from_a_driver_give_the_same_tensor(composed, outside, codec,
                                                              fmt) -> None:
    """Compressed frames in both format spellings: PNG exact, JPEG as OpenCV decodes it."""
    import cv2
    composed(frames=0, names={'preprocess'},
             overrides={'preprocess': {'input_transport': 'compressed'}})
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    publisher = outside.node.create_publisher(CompressedImage, 'image_raw/compressed', qos)
    tensors: dict[int, TensorFrame] = {}
    outside.node.create_subscription(
        TensorFrame, 'tensor',
        lambda m: tensors.__setitem__(convert.stamp_to_ns(m.header.stamp), m), qos)
    assert outside.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
    data = cv2.imencode('.png' if codec == 'png' else '.jpg', SCENE)[1].tobytes()
    msg = CompressedImage(format=fmt, data=data)
    sent: list[int] = []

    def publish() -> bool:
        if not any(s in tensors for s in sent) and (
                not sent or time.time_ns() - sent[-1] > 200_000_000):
            sent.append(time.time_ns())
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(sent[-1], 10**9)
            publisher.publish(msg)
        return any(s in tensors for s in sent)

    assert outside.spin_until(publish, 30.0)
    frame = tensors[next(s for s in sent if s in tensors)]
    tensor = np.frombuffer(frame.data, np.float32).reshape(tuple(frame.shape))
    assert (frame.image_width, frame.image_height) == (640, 480)
    if codec == 'png':
        assert_same_tensor(tensor, model_tensor(SCENE))
    else:  # the model needs 320x240 of a 640x480 frame: libjpeg decodes it at half scale
        reduced = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
        assert_same_tensor(tensor, model_tensor(reduced))
        assert frame.scale == pytest.approx(0.5)  # boxes map to the 640x480 frame as sent
        assert mean_error(tensor, model_tensor(SCENE)) < 2 / 255


def test_the_16_bit_range_is_a_run_time_parameter(composed, outside) -> None:
    """A thermal camera: range16_min/max map its few hundred counts over 0..255."""
    from rclpy.parameter import Parameter
    _, nodes = composed(frames=0, names={'preprocess'})
    preprocess = nodes['preprocess']
    refused = preprocess.set_parameters_atomically([Parameter('range16_min', value=3000),
                                                    Parameter('range16_max', value=2000)])
    assert not refused.successful and 'must be below' in refused.reason
    result = preprocess.set_parameters_atomically([Parameter('range16_min', value=1000),
                                                   Parameter('range16_max', value=2000)])
    assert result.successful, result.reason
    driver = Driver(outside, 'image_raw')
    counts = np.full((480, 640), 1500, np.uint16)
    counts[:, 320:] = 2600  # above the range: saturates
    step, data = 1280, counts.tobytes()
    msg = Image(height=480, width=640, encoding='mono16', step=step, data=data)
    msg.header.frame_id = 'thermal'
    sent: list[int] = []

    def publish() -> bool:
        if not any(s in driver.tensors for s in sent) and (
                not sent or time.time_ns() - sent[-1] > 200_000_000):
            sent.append(time.time_ns())
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(sent[-1], 10**9)
            driver.publisher.publish(msg)
        return any(s in driver.tensors for s in sent)

    assert outside.spin_until(publish, 30.0)
    frame = driver.tensors[next(s for s in sent if s in driver.tensors)]
    tensor = np.frombuffer(frame.data, np.float32).reshape(tuple(frame.shape))
    row = np.rint(tensor[0, 0, 160] * 255)  # the middle row: left half 1500, right half 2600
    assert row[10] == 128 and row[310] == 255  # (1500 - 1000) / 1000 * 255 = 127.5 -> 128


class _RgbSource(FrameSource):
    """A source that delivers RGB (as many drivers' SDKs do), and says so."""

    encoding = 'rgb8'

    def read(self, index: int) -> Optional[np.ndarray]:
        return np.ascontiguousarray(SCENE[:, :, ::-1])


def test_the_camera_stamps_what_its_source_delivers(composed, outside) -> None:
    """The envelope carries the source's encoding: an RGB source's frame is not read as BGR."""
    _, nodes = composed(frames=0, names={'camera', 'preprocess'},
                        overrides={'camera': {'source': 'topic'}})  # no capture thread
    camera = nodes['camera']
    driver = Driver(outside, 'image_in')
    assert outside.spin_until(lambda: nodes['preprocess'].tensor_out.ros_publisher
                              .get_subscription_count() > 0, 10.0)
    camera._source = _RgbSource()
    sent: list[int] = []

    def capture() -> bool:
        if not driver.tensors and (not sent or time.time_ns() - sent[-1] > 200_000_000):
            envelope, loan = camera._capture(len(sent))
            sent.append(envelope.stamp_ns)
            assert envelope.payload.encoding == 'rgb8'
            camera._send(envelope, loan)
        return bool(driver.tensors)

    assert outside.spin_until(capture, 30.0)
    frame = next(iter(driver.tensors.values()))
    tensor = np.frombuffer(frame.data, np.float32).reshape(tuple(frame.shape))
    assert_same_tensor(tensor, model_tensor(SCENE))

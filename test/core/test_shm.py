"""
The shared-memory transport (core/shm.py) between real processes, without ROS.

The peer process is this file run as a script: ``sub TOPIC DOMAIN`` prints one line per frame
(``seq first_pixel writeable``); ``pub TOPIC DOMAIN`` sends frames until killed.
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

from edge_infer_ros.core.frame import Envelope, StageTiming
from edge_infer_ros.core.geometry import Letterbox
from edge_infer_ros.core.payloads import ImagePayload, TensorPayload
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
while not (REPO / 'edge_infer_ros').is_dir() and REPO != REPO.parent:  # if tests move deeper
    REPO = REPO.parent

shm = pytest.importorskip('edge_infer_ros.core.shm')
if shm.unavailable_reason():
    pytest.skip(shm.unavailable_reason(), allow_module_level=True)

#: A domain of our own, so that parallel test runs never share a service.
DOMAIN = 200 + os.getpid() % 50


def _topic(name: str) -> str:
    return f'/test_shm/{os.getpid()}/{name}'


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll a condition until true or timed out (the machine may be loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def image_envelope(seq: int, value: int, shape=(48, 64, 3)) -> Envelope:
    image = np.full(shape, value % 256, np.uint8)
    return Envelope('cam', seq, 1_000 + seq, 'optical', (StageTiming('camera', '/cam', 1, 2, 3),),
                    ImagePayload(image, 'bgr8'))


class Peer:
    """A child process running this file as a peer, its stdout lines collected."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=f'{REPO}{os.pathsep}' + os.environ.get('PYTHONPATH', ''))
        self.proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def frames(self) -> list[list[str]]:
        return [line.split() for line in list(self.lines) if line and line[0].isdigit()]

    def ready(self) -> bool:
        return 'ready' in self.lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def peers():
    started: list[Peer] = []

    def start(*args: str) -> Peer:
        peer = Peer(*args)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


def test_frames_reach_another_process_as_read_only_views(peers):
    topic = _topic('deliver')
    publisher = shm.ShmPublisher(topic, domain=DOMAIN)
    try:
        subscriber = peers('sub', topic, str(DOMAIN))
        assert wait_for(lambda: subscriber.ready() and publisher.subscribers() == 1)
        for seq in range(20):
            assert publisher.send(image_envelope(seq, seq + 100)), publisher.last_error
            assert wait_for(lambda: len(subscriber.frames()) == seq + 1, 10.0)
        frames = subscriber.frames()
        assert [int(f[0]) for f in frames] == list(range(20))
        assert [int(f[1]) for f in frames] == [seq + 100 for seq in range(20)]
        assert {f[2] for f in frames} == {'False'}  # read-only at once
        assert publisher.stats.copied == 20 and publisher.stats.failed == 0
    finally:
        publisher.close()


def test_envelope_and_tensor_fields_survive_the_trip():
    topic = _topic('fields')
    got: list[Envelope] = []
    subscriber = shm.ShmSubscriber(topic, lambda e, r: got.append(e), domain=DOMAIN)
    publisher = shm.ShmPublisher(topic, domain=DOMAIN)
    subscriber.start()
    try:
        tensor = np.arange(3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8)
        trace = (StageTiming('camera', '/cam', 1, 2, 3),
                 StageTiming('preprocess', '/pre', 4, 5, 6))
        envelope = Envelope('front', 7, 99, 'front_optical', trace,
                            TensorPayload(tensor, Letterbox(0.5, 1.0, 2.0), 640, 480))
        assert publisher.send(envelope)
        assert wait_for(lambda: len(got) == 1)
        out = got[0]
        assert (out.camera, out.seq, out.stamp_ns, out.frame_id, out.trace) == \
            ('front', 7, 99, 'front_optical', trace)
        assert out.payload.letterbox == Letterbox(0.5, 1.0, 2.0)
        assert (out.payload.image_width, out.payload.image_height) == (640, 480)
        np.testing.assert_array_equal(out.payload.tensor, tensor)
        assert out.payload.tensor.dtype == np.float32 and not out.payload.tensor.flags.writeable
    finally:
        subscriber.close()
        publisher.close()


def test_a_sample_is_held_exactly_as_long_as_a_view_of_it():
    topic = _topic('lifetime')
    got: list[Envelope] = []
    subscriber = shm.ShmSubscriber(topic, lambda e, r: got.append(e), domain=DOMAIN,
                                   max_borrows=2)
    publisher = shm.ShmPublisher(topic, domain=DOMAIN, max_borrows=2)
    subscriber.start()
    try:
        assert publisher.send(image_envelope(0, 11))
        assert wait_for(lambda: len(got) == 1)
        part = got[0].payload.image[10:20, :, 1]  # a view derived from the handed-out one
        got.clear()
        assert subscriber.borrowed == 1  # the derived view still holds the sample
        for seq in range(1, 6):  # later frames reuse other chunks, never this one
            assert publisher.send(image_envelope(seq, 50 + seq))
            assert wait_for(lambda: len(got) == 1)
            got.clear()
        # The receive thread lets go of the last frame once its handler has returned.
        assert int(part[0, 0]) == 11 and wait_for(lambda: subscriber.borrowed == 1)
        del part
        assert wait_for(lambda: subscriber.borrowed == 0)
    finally:
        subscriber.close()
        publisher.close()


def test_closed_ports_raise_instead_of_aborting():
    topic = _topic('closed')
    got: list[Envelope] = []
    subscriber = shm.ShmSubscriber(topic, lambda e, r: got.append(e), domain=DOMAIN)
    publisher = shm.ShmPublisher(topic, domain=DOMAIN)
    subscriber.start()
    assert publisher.send(image_envelope(0, 5))
    assert wait_for(lambda: len(got) == 1)
    subscriber.close()
    assert int(got[0].payload.image[0, 0, 0]) == 5  # a view outlives its port, not its sample
    with pytest.raises(shm.ShmClosed):
        subscriber.publishers()
    assert subscriber.drain() == 0
    got.clear()  # the sample goes after its port: no abort
    loan = publisher.loan((4, 4, 3))
    publisher.close()
    assert not publisher.send(image_envelope(1, 6)) and 'closed' in publisher.last_error
    with pytest.raises(shm.ShmClosed):
        publisher.subscribers()
    assert not publisher.send(Envelope('cam', 2, 3, 'f', (), ImagePayload(loan.array, 'bgr8')),
                              loan)


def test_a_failing_handler_is_counted_and_the_next_frame_still_arrives():
    topic = _topic('raises')
    got: list[int] = []

    def on_frame(envelope: Envelope, received_ns: int) -> None:
        if envelope.seq == 0:
            raise ValueError('bad frame')
        got.append(envelope.seq)

    subscriber = shm.ShmSubscriber(topic, on_frame, domain=DOMAIN)
    publisher = shm.ShmPublisher(topic, domain=DOMAIN)
    subscriber.start()
    try:
        assert publisher.send(image_envelope(0, 0))
        assert wait_for(lambda: subscriber.stats.errors == 1)
        assert 'bad frame' in subscriber.last_error
        assert publisher.send(image_envelope(1, 1))
        assert wait_for(lambda: got == [1])
        # The failed frame's sample was released too (the last one once its handler returned).
        assert wait_for(lambda: subscriber.borrowed == 0)
    finally:
        subscriber.close()
        publisher.close()


def test_a_loan_is_sent_without_a_copy():
    topic = _topic('loan')
    got: list[Envelope] = []
    subscriber = shm.ShmSubscriber(topic, lambda e, r: got.append(e), domain=DOMAIN)
    publisher = shm.ShmPublisher(topic, domain=DOMAIN)
    subscriber.start()
    try:
        loan = publisher.loan((480, 640, 3))
        loan.array[:] = 42  # a source renders straight into shared memory
        envelope = Envelope('cam', 0, 1, 'f', (), ImagePayload(loan.array, 'bgr8'))
        assert publisher.send(envelope, loan)
        assert loan.taken and publisher.stats.zero_copy == 1 and publisher.stats.copied == 0
        assert wait_for(lambda: len(got) == 1)
        assert int(got[0].payload.image[479, 639, 2]) == 42
        assert not publisher.send(envelope, loan)  # a loan goes once
        assert 'already sent' in publisher.last_error
    finally:
        subscriber.close()
        publisher.close()


def test_a_slow_subscriber_keeps_the_latest_and_counts_what_it_lost():
    topic = _topic('slow')
    release = threading.Event()
    got: list[int] = []

    def slow(envelope: Envelope, received_ns: int) -> None:
        got.append(envelope.seq)
        release.wait(10.0)

    subscriber = shm.ShmSubscriber(topic, slow, domain=DOMAIN)
    publisher = shm.ShmPublisher(topic, domain=DOMAIN)
    subscriber.start()
    try:
        assert publisher.send(image_envelope(0, 0))
        assert wait_for(lambda: got == [0])
        start = time.monotonic()
        for seq in range(1, 51):  # the subscriber is stuck in frame 0
            assert publisher.send(image_envelope(seq, seq)), publisher.last_error
        assert time.monotonic() - start < 5.0  # never blocked by the stuck subscriber
        release.set()
        assert wait_for(lambda: got[-1] == 50)
        assert got == [0, 50]  # keep-latest: the newest frame, nothing older
        assert subscriber.stats.dropped == 49 and subscriber.stats.received == 2
    finally:
        release.set()
        subscriber.close()
        publisher.close()


def test_a_killed_subscriber_neither_blocks_nor_exhausts_the_publisher(peers):
    topic = _topic('kill')
    publisher = shm.ShmPublisher(topic, domain=DOMAIN, max_borrows=2)
    try:
        first = peers('sub', topic, str(DOMAIN), 'hold')  # holds every sample it can
        assert wait_for(lambda: first.ready() and publisher.subscribers() == 1)
        seq = 0
        while not first.frames() or seq < 5:
            assert publisher.send(image_envelope(seq, seq))
            seq += 1
            time.sleep(0.01)
            assert seq < 2000
        first.kill()  # kill -9 while it holds samples
        start = time.monotonic()
        for _ in range(200):  # the publisher goes on: every loan still succeeds
            assert publisher.send(image_envelope(seq, seq)), publisher.last_error
            seq += 1
        assert time.monotonic() - start < 10.0
        publisher.cleanup_dead()
        assert wait_for(lambda: publisher.subscribers() == 0)
        second = peers('sub', topic, str(DOMAIN))  # a restarted subscriber reconnects
        assert wait_for(lambda: second.ready() and publisher.subscribers() == 1)

        def second_receives() -> bool:
            publisher.send(image_envelope(seq, seq))
            return len(second.frames()) >= 3
        assert wait_for(second_receives)
        assert publisher.stats.failed == 0
    finally:
        publisher.close()


def test_housekeeping_scans_for_dead_peers_where_they_can_be_and_once_an_interval(
        monkeypatch):
    """
    A scan reads every node on the host: skipped without subscribers, once an interval.

    One scan frees every dead node whatever topic asked, so it serves the whole process.
    """
    monkeypatch.setattr(shm, '_DEAD_NODE_SCANS', shm._ScanClock(3600.0))
    lonely = shm.ShmPublisher(_topic('lonely'), domain=DOMAIN)
    topics = [_topic('tidy_a'), _topic('tidy_b')]
    publishers = [shm.ShmPublisher(topic, domain=DOMAIN) for topic in topics]
    subscribers = [shm.ShmSubscriber(topic, lambda envelope, received: None, domain=DOMAIN)
                   for topic in topics]
    try:
        assert wait_for(lambda: all(p.subscribers() == 1 for p in publishers))
        lonely.housekeeping()
        assert lonely.stats.cleanups == 0  # no subscriber, none that can have died
        publishers[0].housekeeping()
        publishers[0].housekeeping()
        publishers[1].housekeeping()
        assert [p.stats.cleanups for p in publishers] == [1, 0]  # one scan this interval
        monkeypatch.setattr(shm, '_DEAD_NODE_SCANS', shm._ScanClock(0.0))
        publishers[1].housekeeping()
        assert publishers[1].stats.cleanups == 1
    finally:
        for endpoint in subscribers + publishers + [lonely]:
            endpoint.close()


def test_without_iceoryx2_the_reason_is_given():
    code = ('import sys; sys.modules["iceoryx2"] = None\n'
            'from edge_infer_ros.core import shm\n'
            'print(shm.unavailable_reason())\n'
            'try:\n'
            '    shm.ShmPublisher("/x")\n'
            'except shm.ShmError as error:\n'
            '    print("refused:", error)\n')
    env = dict(os.environ, PYTHONPATH=f'{REPO}{os.pathsep}' + os.environ.get('PYTHONPATH', ''))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stdout
    assert 'iceoryx2 Python package is not installed' in out
    assert 'refused: the iceoryx2 Python package is not installed' in out


# -- the peer process -----------------------------------------------------------------------------
def _peer_subscriber(topic: str, domain: int, hold: bool) -> None:
    held: list[Envelope] = []

    def on_frame(envelope: Envelope, received_ns: int) -> None:
        image = envelope.payload.image
        print(envelope.seq, int(image[0, 0, 0]), image.flags.writeable, flush=True)
        if hold:
            held.append(envelope)

    subscriber = shm.ShmSubscriber(topic, on_frame, domain=domain, max_borrows=2)
    subscriber.start()
    print('ready', flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    subscriber.close()


def _main(argv: list[str]) -> Optional[int]:
    role, topic, domain = argv[0], argv[1], int(argv[2])
    if role == 'sub':
        _peer_subscriber(topic, domain, hold=len(argv) > 3 and argv[3] == 'hold')
    return 0


if __name__ == '__main__':
    sys.exit(_main(sys.argv[1:]))


def test_every_camera_encoding_travels_with_its_encoding_and_byte_order():
    """Raw YUV, Bayer and 16-bit frames (big-endian too) arrive as they left; misfits refused."""
    from edge_infer_ros.core.image_encodings import raw_view
    from support.camera_encoder import encode, reference_scene
    topic = _topic('encodings')
    got: list[tuple[str, np.ndarray]] = []  # copies: a held view holds its sample
    subscriber = shm.ShmSubscriber(
        topic, lambda e, r: got.append((e.payload.encoding, np.array(e.payload.image))),
        domain=DOMAIN)
    publisher = shm.ShmPublisher(topic, domain=DOMAIN)
    subscriber.start()
    scene = reference_scene(64, 48)
    cases = [('nv12', False), ('yuyv', False), ('bayer_grbg16', True), ('mono16', True),
             ('rgba16', False), ('uyvy', False)]
    try:
        for seq, (encoding, bigendian) in enumerate(cases):
            step, data, _ = encode(scene, encoding, bigendian, pad=4)
            view = raw_view(48, 64, encoding, step, data, int(bigendian))
            assert publisher.send(Envelope('cam', seq, 1_000 + seq, 'f', (),
                                           ImagePayload(view, encoding)))
            assert wait_for(lambda: len(got) == seq + 1), subscriber.last_error
            received, image = got[-1]
            assert received == encoding and image.dtype == view.dtype
            np.testing.assert_array_equal(image, view)
        # An array whose shape cannot be its encoding's is refused on arrival, and counted.
        misfit = ImagePayload(np.zeros((7, 64), np.uint8), 'nv12')
        bad = Envelope('cam', 99, 2_000, 'f', (), misfit)
        assert publisher.send(bad)
        assert wait_for(lambda: subscriber.stats.errors == 1)
        assert 'nv12 image of shape [7, 64]' in subscriber.last_error
    finally:
        subscriber.close()
        publisher.close()

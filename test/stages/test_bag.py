"""The camera's bag source on bags written by rosbags' own writer: pace, stamps, bad bags."""

from __future__ import annotations

from pathlib import Path

from edge_infer_ros.stages.camera import SourceError
from edge_infer_ros.stages.sources import open_source
import numpy as np
import pytest
from support.bags import SEC, STAMP_2020_NS, storage_file, write_bag

pytest.importorskip('rosbags')


def decode(msg, msgtype: str):
    """Decode as the node would (it passes convert's function); plain bgr8 is enough here."""
    if msgtype.endswith('CompressedImage'):
        import cv2
        return cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR), 'bgr8'
    return np.asarray(msg.data).reshape(msg.height, msg.width, 3), msg.encoding


def bag_source(uri, topic: str = '', loop: bool = False):
    return open_source('bag', str(uri), 64, 48, 30.0, 0, loop, topic, decode)


@pytest.mark.parametrize('storage', ['mcap', 'db3'])
@pytest.mark.parametrize('as_file', [False, True])
def test_a_15_hz_bag_gives_its_frames_once_at_the_recorded_pace(
        tmp_path: Path, storage: str, as_file: bool) -> None:
    bag = write_bag(tmp_path / 'bag', storage, frames=20, rate_hz=15.0)
    source = bag_source(storage_file(bag) if as_file else bag)
    frames, periods, stamps = [], [], []
    for index in range(40):
        image = source.read(index)
        if image is None:
            break
        frames.append(int(image[0, 0, 0]))
        stamps.append(source.recorded_stamp_ns)
        periods.append(source.period_after_s(index))
    assert frames == list(range(20))  # once, in order (loop defaults to false)
    assert stamps[0] == STAMP_2020_NS and source.encoding == 'bgr8'
    assert all(p == pytest.approx(1 / 15, abs=1e-6) for p in periods[:-1])
    assert periods[-1] is None and 'end of bag' in source.ended
    source.close()


def test_loop_starts_the_bag_again_and_counts_it(tmp_path: Path) -> None:
    source = bag_source(write_bag(tmp_path / 'bag', frames=3), loop=True)
    frames = [int(source.read(i)[0, 0, 0]) for i in range(7)]
    assert frames == [0, 1, 2, 0, 1, 2, 0] and source.loops == 2 and not source.ended


def test_a_compressed_topic_is_chosen_by_name(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'bag', frames=2, topic='/cam/compressed',
                    msgtype='sensor_msgs/msg/CompressedImage', extra_topic='/chatter')
    source = bag_source(bag, '/cam/compressed')
    assert source.read(0).shape == (48, 64, 3) and source.msgtype.endswith('CompressedImage')


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / 'corrupt.mcap'
    path.write_bytes(b'\x89MCAP0\r\n' + bytes(range(256)) * 8)
    return path


def _truncated(tmp_path: Path, storage: str) -> Path:
    bag = write_bag(tmp_path / f'whole_{storage}', storage, frames=30, width=320, height=240)
    data = storage_file(bag).read_bytes()
    path = tmp_path / f'truncated.{storage}'
    path.write_bytes(data[:len(data) // 3])
    return path


@pytest.mark.parametrize('kind, make, reason', [
    ('missing file', lambda t: t / 'nowhere.mcap', 'not found'),
    ('corrupt', _corrupt, 'cannot be read'),
    ('not a bag', lambda t: (t / 'notes.txt').write_text('x') and t / 'notes.txt',
     'not a .mcap or .db3'),
    ('empty', lambda t: write_bag(t / 'empty', frames=0), 'holds no messages'),
    ('wrong type', lambda t: write_bag(t / 'text', msgtype='std_msgs/msg/String',
                                       topic='/camera/image_raw'), 'not an image'),
    ('missing topic', lambda t: write_bag(t / 'other', topic='/other/image'), 'has no topic'),
])
def test_a_bad_bag_is_refused_with_its_reason(tmp_path: Path, kind: str, make, reason: str
                                              ) -> None:
    with pytest.raises(SourceError, match=reason):
        bag_source(make(tmp_path), '/camera/image_raw')


@pytest.mark.parametrize('storage', ['mcap', 'db3'])
def test_a_truncated_bag_is_refused_or_ends_with_the_reason(tmp_path: Path, storage: str
                                                            ) -> None:
    path = _truncated(tmp_path, storage)
    try:
        source = bag_source(path)
    except SourceError as error:
        assert 'cannot be read' in str(error) or 'no messages' in str(error)
        return
    read = 0
    for index in range(100):
        try:
            if source.read(index) is None:
                break
            read += 1
        except SourceError as error:  # one message cut in half: counted by the node
            assert 'cannot be decoded' in str(error)
    assert read < 30 and source.ended  # never all 30: the replay ends with why


def test_without_a_timestamps_file_a_folder_has_no_recorded_pace(tmp_path: Path) -> None:
    import cv2
    for index in range(3):
        cv2.imwrite(str(tmp_path / f'{index:03d}.png'), np.zeros((8, 8, 3), np.uint8))
    source = open_source('folder', str(tmp_path), 8, 8, 30.0, 0, False)
    assert source.period_after_s(0) is None
    (tmp_path / 'timestamps.txt').write_text('# ns\n1000000000\n1066666666\n1133333333\n')
    source = open_source('folder', str(tmp_path), 8, 8, 30.0, 0, False)
    assert source.period_after_s(0) == pytest.approx(0.066666666)
    assert source.period_after_s(2) is None  # the last image: no next one
    assert [source.read(i) is None for i in range(4)] == [False, False, False, True]
    (tmp_path / 'timestamps.txt').write_text('1\n2\n')
    with pytest.raises(SourceError, match='2 stamps for 3 images'):
        open_source('folder', str(tmp_path), 8, 8, 30.0, 0, False)


def test_a_video_replays_at_its_own_frame_rate_once(tmp_path: Path) -> None:
    import cv2
    path = tmp_path / 'v.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 15.0, (64, 48))
    for index in range(10):
        writer.write(np.full((48, 64, 3), index * 20, np.uint8))
    writer.release()
    source = open_source('video', str(path), 64, 48, 30.0, 0, False)
    assert source.period_after_s(0) == pytest.approx(1 / 15)
    assert sum(source.read(i) is not None for i in range(25)) == 10


def test_recorded_gap_uses_receive_times(tmp_path: Path) -> None:
    source = bag_source(write_bag(tmp_path / 'bag', frames=3, rate_hz=5.0))
    source.read(0)
    assert source.period_after_s(0) == pytest.approx(0.2) and source.recorded_time_ns == \
        STAMP_2020_NS and STAMP_2020_NS % SEC == 0


def test_without_rosbags_the_source_says_how_to_install_it(tmp_path: Path, monkeypatch) -> None:
    import sys
    bag = write_bag(tmp_path / 'bag', frames=1)
    monkeypatch.setitem(sys.modules, 'rosbags', None)
    monkeypatch.setitem(sys.modules, 'rosbags.highlevel', None)
    with pytest.raises(SourceError, match='pip install rosbags'):
        bag_source(bag)

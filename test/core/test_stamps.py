"""StampOrder: a camera's stamp going back is counted and shown as a fault for hold_s."""

import threading

from edge_infer_ros.core.stamps import StampOrder
import pytest

MS = 1_000_000
S = 1_000_000_000


def test_growing_and_equal_stamps_are_no_fault():
    order = StampOrder()
    assert [order.observe('cam', stamp, seq, 0)
            for seq, stamp in enumerate((10 * MS, 20 * MS, 20 * MS, 21 * MS))] == [None] * 4
    assert order.count == 0 and order.fault(0) == ''


def test_a_stamp_going_back_is_counted_and_named():
    order = StampOrder()
    order.observe('front', 100 * MS, 1, 0)
    text = order.observe('front', 50 * MS, 2, 0)
    assert text == ('camera front: stamp went back 50.000 ms (frame 2); '
                    'check the driver and the clock')
    assert order.count == 1 and order.fault(0) == text


def test_the_next_stamp_is_compared_with_the_one_that_went_back():
    order = StampOrder()
    for seq, stamp in enumerate((100 * MS, 50 * MS, 60 * MS)):
        order.observe('cam', stamp, seq, 0)
    assert order.count == 1  # 60 ms after 50 ms grows again: a restart is one fault, not many


def test_cameras_are_judged_separately():
    order = StampOrder()
    order.observe('left', 100 * MS, 1, 0)
    assert order.observe('right', 10 * MS, 1, 0) is None  # its own first stamp
    assert order.observe('left', 101 * MS, 2, 0) is None
    assert order.observe('right', 5 * MS, 2, 0) is not None
    assert order.count == 1


def test_the_fault_clears_hold_s_after_the_last_one_and_the_count_stays():
    order = StampOrder(hold_s=2.0)
    order.observe('cam', 100 * MS, 1, 0)
    order.observe('cam', 50 * MS, 2, 10 * S)
    assert order.fault(12 * S).startswith('camera cam')  # exactly hold_s later: still shown
    assert order.fault(12 * S + 1) == ''
    assert order.count == 1
    assert order.fault(10 * S) == ''  # cleared for good, not recomputed from the time


def test_a_later_fault_restarts_the_hold():
    order = StampOrder(hold_s=1.0)
    order.observe('cam', 100 * MS, 1, 0)
    order.observe('cam', 50 * MS, 2, 0)
    second = order.observe('cam', 40 * MS, 3, int(0.9 * S))
    assert order.fault(int(1.5 * S)) == second and 'frame 3' in second
    assert order.fault(2 * S) == ''


def test_a_new_hold_applies_to_the_fault_shown_now():
    order = StampOrder(hold_s=60.0)
    order.observe('cam', 100 * MS, 1, 0)
    order.observe('cam', 50 * MS, 2, 0)
    order.hold_s = 1.0
    assert order.fault(2 * S) == ''


def test_cameras_are_bounded_and_the_least_recently_heard_makes_room():
    order = StampOrder(max_cameras=3)
    for name in ('a', 'b', 'c'):
        order.observe(name, 100 * MS, 1, 0)
    order.observe('a', 101 * MS, 2, 0)  # a heard again: b is now the oldest
    order.observe('d', 100 * MS, 1, 0)
    assert order.cameras() == 3
    assert order.observe('b', 1 * MS, 2, 0) is None  # forgotten: a new baseline, no fault
    assert order.observe('a', 1 * MS, 3, 0) is not None  # remembered


def test_many_cameras_from_outside_keep_memory_bounded():
    order = StampOrder(max_cameras=8)
    for index in range(10_000):
        order.observe(f'camera_{index}', index, 0, 0)
    assert order.cameras() == 8 and order.count == 0


def test_concurrent_cameras_count_every_backwards_stamp():
    order = StampOrder()

    def run(camera: str) -> None:
        for seq in range(2000):
            order.observe(camera, (seq % 2) * MS, seq, 0)  # 0, 1 ms, 0, ...: every 2nd goes back

    threads = [threading.Thread(target=run, args=(f'cam{i}',)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert order.count == 4 * 999


@pytest.mark.parametrize('kwargs', [{'max_cameras': 0}, {'hold_s': 0.0}, {'hold_s': -1.0}])
def test_bad_bounds_are_refused(kwargs):
    with pytest.raises(ValueError):
        StampOrder(**kwargs)


def test_the_cameras_last_frame_again_is_a_counted_repeat():
    order = StampOrder()
    assert not order.repeated('front', 100)  # nothing seen yet
    order.observe('front', 100, 0, 0)
    assert order.repeated('front', 100) and order.repeated('front', 100)
    assert not order.repeated('rear', 100)  # another camera's stamp
    assert not order.repeated('front', 101)
    order.observe('front', 101, 1, 0)
    assert not order.repeated('front', 100)  # an older one goes back: observe's business
    assert order.duplicates == 2 and order.count == 0
    assert order.last_stamp('front') == 101 and order.last_stamp('rear') is None

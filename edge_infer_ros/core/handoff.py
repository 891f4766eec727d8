"""
In-process zero-copy handoff between stage nodes, with DDS only when someone outside listens.

Over 400 lines as one mechanism: the queue, the input (inline, thread, auto) and the publisher
share one set of counters whose sums must stay exact.

rclpy has no intra-process communication: every publish converts and copies the whole
message, and every executor wake-up costs about half a millisecond on a small CPU. So stages in
one process hand each other immutable :class:`~edge_infer_ros.core.frame.Envelope` objects by
reference through a process-wide :class:`LocalBus`:

* a :class:`StageInput` receives by direct call (``inline``: the stage runs in the upstream
  stage's thread, ~1 us), through a bounded keep-latest queue served by its own worker thread
  (``thread``: stages overlap, ~50 us and a thread wake-up per frame), or by choosing one of
  the two per frame (``auto``, see :meth:`StageInput.inline_pays`): inline while the stage is
  idle and the upstream thread has time to spare, queued while the stage is busy or frames come
  fast enough for overlap to pay; it counts every frame it drops;
* a :class:`StagePublisher` gives each envelope to the local inputs of its topic and builds and
  publishes the ROS message only while a subscription outside the process exists, i.e. while
  the topic's subscription count is larger than the number of local inputs on it. It reads
  the counts again when a DDS match event or an activation says they changed, and at the
  latest :data:`COUNTS_MAX_AGE_S` after the last reading, not on every frame.

Every local input also holds a real ROS subscription, so the same node works unchanged when the
publisher is in another process or is somebody else's node; a message that comes back through
DDS for a frame already delivered locally is recognised and ignored.

No ROS import here on purpose beyond duck typing: the queue and bus logic is tested plainly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import threading
import time
from typing import Any, Callable, Hashable, Optional
import weakref

from edge_infer_ros.core.frame import Envelope

#: How a stage input runs its callback.
INPUT_MODES = ('inline', 'thread', 'auto')

#: The ways one frame can reach an input: by reference in this process, by the same-host
#: transport, by DDS. The first copy is taken; a copy that came another way is an echo.
LOCAL, SAME_HOST, ROS = 'local', 'same_host', 'ros'

#: The oldest subscriber counts a publish goes by (s): a subscriber that appears without a
#: matched event (a same-host one, or any on Humble) gets frames at most this late.
COUNTS_MAX_AGE_S = 0.5

#: Weight of the newest run in an ``auto`` input's running mean of its service time, and the
#: largest multiple of the mean one run may count as: a run stalled by the scheduler (a loaded
#: machine) must not make the input predict long runs, and a paced camera wait, for many
#: frames after it.
SERVICE_EWMA_WEIGHT = 0.1
SERVICE_CLIP = 2.0

# Per thread: the Pace of the source publishing in it (set by Pace.publishing) and whether it is
# the executor's thread delivering a DDS message (see StageInput.deliver_from_ros).
_thread = threading.local()


class Pace:
    """
    What a paced source (a camera loop) and the stages it feeds tell each other.

    The source holds one and publishes inside ``with pace.publishing(idle_ns):``: ``auto``
    inputs that receive in that call (directly or down an inline chain) read how long the
    source idled before the frame (``None``: not paced, the gap between frames is used) and,
    when they queue it, note when they expect to be free; the source then asks
    :meth:`take_ready_at_ns` when to capture the next frame.
    """

    def __init__(self) -> None:
        self.idle_ns: Optional[int] = None
        self._ready_ns = 0
        self._busiest: Optional['StageInput'] = None
        self._outer: list[Optional[Pace]] = []  # the paces these blocks replaced, innermost last

    def publishing(self, idle_ns: Optional[int]) -> 'Pace':
        """
        Set how long the source idled before the frame it publishes in the ``with`` block.

        The pace is its own context manager, not a generator's: this runs before every frame,
        and a generator-based one costs the frame several times more after an idle gap.
        """
        self.idle_ns = idle_ns
        return self

    def __enter__(self) -> 'Pace':
        self._outer.append(getattr(_thread, 'pace', None))
        _thread.pace = self
        return self

    def __exit__(self, *_: Any) -> None:
        _thread.pace = self._outer.pop()

    def note_ready(self, ready_ns: int, stage_input: 'StageInput') -> None:
        """Note when a stage that queued the frame expects to be free (the latest counts)."""
        if ready_ns > self._ready_ns:
            self._ready_ns = ready_ns
            self._busiest = stage_input

    def take_ready_at_ns(self, wait_s: float = 0.0) -> int:
        """
        Return (and reset) when the stages that queued this source's frames expect to be free.

        ``time.perf_counter_ns()`` time; 0 when every frame published since the last call ran
        at once. A source that can choose when to capture (a file, a synthetic scene) uses it
        to capture just in time instead of filling a queue (camera ``pace_to_pipeline``).
        With ``wait_s``, it first waits (at most that long) until the busiest such stage has
        taken the frame from its queue, and answers from then: a prediction made while the
        stage was still busy with an earlier frame would let a slow run make the next frame
        push this one out of the queue.
        """
        ready, busiest = self._ready_ns, self._busiest
        self._ready_ns, self._busiest = 0, None
        if ready and wait_s > 0.0 and busiest is not None:
            ready = busiest.wait_taken(wait_s)
        return ready


def current_pace() -> Optional[Pace]:
    """Return the Pace of the source publishing in this thread, if any."""
    return getattr(_thread, 'pace', None)


class KeepLatestQueue:
    """
    Bounded FIFO that never blocks the producer: when full, the oldest item is dropped.

    Keeping the latest frame bounds latency under overload; every drop is counted so that
    captured = processed + dropped can be checked exactly. With ``key`` (for example the
    camera of a frame) the bound holds per key: a fast camera cannot push a slow one's frames
    out of a detector shared by several cameras, and frames are still served in arrival order.
    """

    def __init__(self, depth: int, key: Optional[Callable[[Any], Hashable]] = None) -> None:
        if depth < 1:
            raise ValueError(f'queue depth must be >= 1, got {depth}')
        self._items: deque[Any] = deque()
        self._depth = depth
        self._key = key
        self._per_key: dict[Hashable, int] = {}
        self.dropped = 0

    @property
    def depth(self) -> int:
        """Maximum number of items held (per key when keyed)."""
        return self._depth

    @depth.setter
    def depth(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f'queue depth must be >= 1, got {depth}')
        self._depth = depth
        for key in list(self._per_key):
            while self._per_key.get(key, 0) > depth:
                self._drop_oldest(key)

    def _drop_oldest(self, key: Hashable) -> None:
        for index, (item_key, _) in enumerate(self._items):
            if item_key == key:
                del self._items[index]
                break
        self._per_key[key] -= 1
        self.dropped += 1

    def put(self, item: Any) -> bool:
        """Add an item; return True if an older one had to be dropped for it."""
        key = self._key(item) if self._key is not None else None
        dropped = False
        if self._per_key.get(key, 0) >= self._depth:
            self._drop_oldest(key)
            dropped = True
        self._items.append((key, item))
        self._per_key[key] = self._per_key.get(key, 0) + 1
        return dropped

    def pop(self) -> Any:
        """Remove and return the oldest item (IndexError when empty)."""
        key, item = self._items.popleft()
        self._per_key[key] -= 1
        return item

    def clear(self) -> int:
        """Drop everything queued; return how many, counted as drops."""
        count = len(self._items)
        self._items.clear()
        self._per_key.clear()
        self.dropped += count
        return count

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class InputStats:
    """Counters of one stage input (read by diagnostics and the report)."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0
    duplicates_ignored: int = 0
    #: ``auto`` inputs: frames run in the upstream thread / handed to the worker.
    ran_inline: int = 0
    ran_on_worker: int = 0


class StageInput:
    """
    The receiving end of a topic for one stage: local deliveries and ROS messages alike.

    ``callback(envelope, received_ns)`` does the stage's work; ``received_ns`` is a
    ``time.monotonic_ns()`` reading (a duration's start: see core/clock.py). Exceptions it
    raises are caught, counted as errors (the frame is dropped) and passed to ``on_error``, so
    one bad frame never kills the stage. A ``pinned`` input keeps the mode and depth its stage
    chose: the stage-wide ``input_mode`` / ``queue_depth`` settings (:meth:`apply_settings`) do not
    reach it (the budget monitor's deep trace queue must not shrink to a frame queue's depth).
    """

    def __init__(self, topic: str, callback: Callable[[Envelope[Any], int], None], *,
                 mode: str = 'thread', depth: int = 1, name: str = '',
                 on_error: Optional[Callable[[BaseException, Optional[Envelope[Any]]],
                                             None]] = None,
                 dedup_window: int = 64, pinned: bool = False,
                 gate: Optional[Callable[[Envelope[Any], bool], None]] = None) -> None:
        if mode not in INPUT_MODES:
            raise ValueError(f'input mode must be one of {INPUT_MODES}, got {mode!r}')
        self.topic = topic
        self.name = name or topic
        self._callback = callback
        self._on_error = on_error
        # Checks a frame that did not come through a message conversion as the conversion
        # would have: gate(envelope, local) raises to refuse it; ``local``: by reference.
        self._gate = gate
        self._mode = mode
        self.pinned = pinned
        # Bounded per camera: one camera's burst never evicts another camera's frame.
        self._queue = KeepLatestQueue(depth, key=lambda item: item[0].camera)
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # the worker waits for frames on it
        self._taken = threading.Condition(lock)  # paced sources wait for the queue to empty
        self._inline_lock = threading.Lock()
        self._busy = False
        self._running = False
        self._worker: Optional[threading.Thread] = None
        # Frames seen, by key. Shared memory and DDS deliver from different threads: one lock
        # makes "seen? then remember" a single step, so a frame that comes both ways runs once.
        self._keys_lock = threading.Lock()
        self._recent_keys: deque[Hashable] = deque(maxlen=dedup_window)
        self._recent_origin: dict[Hashable, str] = {}  # the way each key came first
        self.stats = InputStats()
        # auto mode: running mean of the service time, start of the current run, when the
        # previous delivery returned to its caller and whether that one ran inline.
        self._service_ns = 0.0
        self._run_started_ns = 0
        self._last_return_ns = 0
        self._last_inline = True

    # -- configuration -------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """'inline', 'thread' or 'auto'."""
        return self._mode

    @property
    def depth(self) -> int:
        """Queue depth of a threaded input."""
        return self._queue.depth

    def apply_settings(self, mode: str, depth: int) -> None:
        """Apply the stage-wide input settings, unless this input is pinned."""
        if not self.pinned:
            self.set_depth(depth)
            self.set_mode(mode)

    def set_depth(self, depth: int) -> None:
        """Change the queue depth at run time (drops the excess, counted)."""
        with self._cond:
            self._queue.depth = depth
            self.stats.dropped = self._queue.dropped

    def set_mode(self, mode: str) -> None:
        """Switch between inline and threaded delivery (restarts the worker if running)."""
        if mode not in INPUT_MODES:
            raise ValueError(f'input mode must be one of {INPUT_MODES}, got {mode!r}')
        if mode == self._mode:
            return
        running = self._running
        self.stop()
        self._mode = mode
        if running:
            self.start()

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        """Accept frames; a threaded input starts its worker."""
        with self._cond:
            if self._running:
                return
            self._running = True
        if self._mode != 'inline':
            self._worker = threading.Thread(target=self._work, name=f'eir:{self.name}',
                                            daemon=True)
            self._worker.start()

    def stop(self) -> None:
        """Stop accepting frames; queued frames are dropped and counted."""
        with self._cond:
            if not self._running:
                return
            self._running = False
            self._queue.clear()
            self.stats.dropped = self._queue.dropped
            self._cond.notify_all()
            self._taken.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None

    @property
    def running(self) -> bool:
        """Tell whether the input accepts frames (between start() and stop())."""
        return self._running

    def idle(self) -> bool:
        """Tell whether nothing is queued or being processed."""
        with self._cond:
            return not self._busy and len(self._queue) == 0

    # -- delivery ------------------------------------------------------------------------
    def deliver(self, envelope: Envelope[Any]) -> None:
        """Hand one frame to the stage (called by a local publisher: by reference)."""
        if self.passes_gate(envelope, local=True):
            self._accept(envelope, time.monotonic_ns())

    def passes_gate(self, envelope: Envelope[Any], local: bool = False) -> bool:
        """Run the input's gate; a refused frame is counted received and failed, with why."""
        if self._gate is None:
            return True
        try:
            self._gate(envelope, local)
        except Exception as error:  # noqa: B902 - any refusal is counted, never raised
            self.refuse(error, envelope)
            return False
        return True

    def refuse(self, error: BaseException, envelope: Optional[Envelope[Any]]) -> None:
        """Count a frame refused before the stage saw it (the reason first, then the count)."""
        with self._cond:
            self.stats.received += 1
        try:
            if self._on_error is not None:
                self._on_error(error, envelope)
        finally:
            with self._cond:
                self.stats.errors += 1

    def deliver_from_ros(self, envelope: Envelope[Any], key: Hashable) -> Optional[str]:
        """
        Hand a frame that came through DDS, unless it came another way first.

        Return the way its first copy came (LOCAL, SAME_HOST) when this one is an echo and
        ignored, None when it was handed on. The same message twice by DDS is handed on twice
        (the stage's stamp order counts the repeat).
        """
        received_ns = time.monotonic_ns()
        first = self._first_way(key, ROS)
        if first is not None:
            return first
        # This is the executor's thread, which serves parameters, services and diagnostics:
        # no auto input runs a stage here, nor further down an inline chain started here.
        outer = getattr(_thread, 'from_dds', False)
        _thread.from_dds = True
        try:
            self._accept(envelope, received_ns, may_inline=False)
        finally:
            _thread.from_dds = outer
        return None

    def deliver_same_host(self, envelope: Envelope[Any], key: Hashable) -> None:
        """
        Hand a frame from the same-host transport, unless it came another way first.

        The gate judges it (it skipped message conversion); a refused frame is remembered
        too, so that its DDS copy is not counted twice.
        """
        received_ns = time.monotonic_ns()
        if self._first_way(key, SAME_HOST) is None and self.passes_gate(envelope):
            self._accept(envelope, received_ns)

    def remember(self, key: Hashable) -> None:
        """Note a frame delivered locally (by reference), so that its other copies are ignored."""
        with self._keys_lock:
            if key not in self._recent_origin:
                self._remember(key, LOCAL)

    def _first_way(self, key: Hashable, way: str) -> Optional[str]:
        """Return the other way a frame came first (and count the echo), else remember it."""
        with self._keys_lock:
            first = self._recent_origin.get(key)
            if first is None:
                self._remember(key, way)
                return None
            if first == way:
                return None
            self.stats.duplicates_ignored += 1
            return first

    def _remember(self, key: Hashable, way: str) -> None:
        if len(self._recent_keys) == self._recent_keys.maxlen:
            self._recent_origin.pop(self._recent_keys[0], None)
        self._recent_keys.append(key)
        self._recent_origin[key] = way

    def _accept(self, envelope: Envelope[Any], received_ns: int,
                may_inline: bool = True) -> None:
        if not self._running:
            with self._cond:  # the queue's counter is the one count of drops
                self.stats.received += 1
                self._queue.dropped += 1
                self.stats.dropped = self._queue.dropped
            return
        if self._mode == 'inline':
            with self._inline_lock:
                self.stats.received += 1
                self._busy = True
                try:
                    self._run(envelope, received_ns)
                finally:
                    self._busy = False
            return
        auto = self._mode == 'auto'
        may_inline = may_inline and not getattr(_thread, 'from_dds', False)
        with self._cond:
            self.stats.received += 1
            if auto and may_inline and not self._busy and not self._queue and \
                    self.inline_pays():
                self._busy = True
                self.stats.ran_inline += 1
                inline = True
            else:
                self._queue.put((envelope, received_ns))
                self.stats.dropped = self._queue.dropped
                self._note_ready()
                self._cond.notify()
                inline = False
        if inline:
            try:
                self._run(envelope, received_ns)
            finally:
                with self._cond:
                    self._busy = False
                    if self._queue:
                        self._cond.notify()  # a frame from another thread came meanwhile
        if auto and may_inline:
            self._last_inline = inline
            self._last_return_ns = time.perf_counter_ns()

    def inline_pays(self) -> bool:
        """
        Tell whether an ``auto`` input should run the next frame in the caller's thread.

        Inline costs no thread wake-up and no second thread contending for the GIL and the
        cores, but holds the upstream thread for one service time. That is free while the
        upstream would idle at least that long anyway; otherwise the worker overlaps the two.
        A paced source reports its idle time (:meth:`Pace.publishing`): inline while what would be
        left of it after this stage's run is at least a quarter of the run. Other threads are
        judged by the gap since their previous frame, of which inline must leave one service
        time idle (they may have worked through the gap rather than slept). Frames from DDS
        always go to the worker: the executor's thread never runs a stage.
        """
        service = self._service_ns
        if service <= 0.0:
            return True
        pace = current_pace()
        idle = pace.idle_ns if pace is not None else None
        if idle is not None:
            left = idle if self._last_inline else idle - service
            return bool(left >= 0.25 * service)
        if not self._last_return_ns:
            return True
        gap = time.perf_counter_ns() - self._last_return_ns
        left = gap if self._last_inline else gap - service
        return left >= service

    def _note_ready(self) -> None:
        """Tell the publishing source when this input expects to be free (cond held)."""
        pace = current_pace()
        if pace is None:
            return
        service = self._service_ns
        begin = self._run_started_ns if self._busy else time.perf_counter_ns()
        pace.note_ready(int(begin + service * (len(self._queue) + (1 if self._busy else 0))),
                        self)

    def wait_taken(self, timeout_s: float) -> int:
        """Wait until the queue is empty; return when the input expects to be free."""
        with self._cond:
            self._taken.wait_for(lambda: not self._queue or not self._running, timeout_s)
            begin = self._run_started_ns if self._busy else time.perf_counter_ns()
            return int(begin + (self._service_ns if self._busy else 0.0))

    def _work(self) -> None:
        cond = self._cond
        while True:
            with cond:
                # busy: an auto input runs a frame in the upstream thread; one run at a time.
                while self._running and (not self._queue or self._busy):
                    cond.wait()
                if not self._running:
                    return
                envelope, received_ns = self._queue.pop()
                self._busy = True
                self._run_started_ns = time.perf_counter_ns()
                if self._mode == 'auto':
                    self.stats.ran_on_worker += 1
                if not self._queue:
                    self._taken.notify_all()
            try:
                self._run(envelope, received_ns)
            finally:
                with cond:
                    self._busy = False

    def _run(self, envelope: Envelope[Any], received_ns: int) -> None:
        started = self._run_started_ns = time.perf_counter_ns()
        try:
            self._callback(envelope, received_ns)
        except Exception as error:  # noqa: B902 - a stage must survive any bad frame
            try:
                if self._on_error is not None:
                    self._on_error(error, envelope)
            finally:
                self.stats.errors += 1  # after the reason: whoever sees the count sees why
        else:
            self.stats.processed += 1
        took = time.perf_counter_ns() - started
        mean = self._service_ns
        self._service_ns = (float(took) if mean <= 0.0 else
                            mean + SERVICE_EWMA_WEIGHT * (min(took, SERVICE_CLIP * mean) - mean))


class LocalBus:
    """
    Which stage inputs live in this process, by resolved topic name.

    One bus per rclpy context (a process normally has one), so that two contexts in one
    test process behave like two processes.
    """

    _buses: 'weakref.WeakKeyDictionary[Any, LocalBus]' = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._inputs: dict[str, tuple[StageInput, ...]] = {}
        self._ros_subscribers: dict[str, int] = {}
        self._same_host: dict[str, int] = {}
        self._lock_inputs = threading.Lock()

    @classmethod
    def for_context(cls, context: Any) -> 'LocalBus':
        """Return the bus of an rclpy context: stages share it when they share the context."""
        with cls._lock:
            bus = cls._buses.get(context)
            if bus is None:
                bus = cls()
                cls._buses[context] = bus
            return bus

    def attach(self, topic: str, stage_input: StageInput, has_ros_subscription: bool) -> None:
        """Register a local input on a resolved topic."""
        with self._lock_inputs:
            self._inputs[topic] = self._inputs.get(topic, ()) + (stage_input,)
            if has_ros_subscription:
                self._ros_subscribers[topic] = self._ros_subscribers.get(topic, 0) + 1

    def detach(self, topic: str, stage_input: StageInput, has_ros_subscription: bool) -> None:
        """Remove a local input (node destroyed or cleaned up)."""
        with self._lock_inputs:
            self._inputs[topic] = tuple(i for i in self._inputs.get(topic, ())
                                        if i is not stage_input)
            if has_ros_subscription:
                self._ros_subscribers[topic] = max(0, self._ros_subscribers.get(topic, 0) - 1)

    def inputs(self, topic: str) -> tuple[StageInput, ...]:
        """Local inputs of a topic (an immutable snapshot: safe to iterate while others attach)."""
        return self._inputs.get(topic, ())

    def local_ros_subscriptions(self, topic: str) -> int:
        """How many of the topic's ROS subscriptions belong to local inputs."""
        return self._ros_subscribers.get(topic, 0)

    def count_same_host(self, topic: str, change: int) -> None:
        """Note a local input's same-host receiver (+1) or its end (-1)."""
        with self._lock_inputs:
            self._same_host[topic] = max(0, self._same_host.get(topic, 0) + change)

    def local_same_host_subscriptions(self, topic: str) -> int:
        """How many of the topic's same-host receivers belong to local inputs."""
        return self._same_host.get(topic, 0)


class LoanBlock:
    """
    ``with publisher.loaned(shape, dtype) as loan:``: gives back a loan the block did not send.

    A class, not a generator's context manager: a stage enters one on every frame, and after
    an idle gap a generator-based one costs the frame several times more.
    """

    __slots__ = ('loan',)

    def __init__(self, loan: Any) -> None:
        self.loan = loan

    def __enter__(self) -> Any:
        return self.loan

    def __exit__(self, *_: Any) -> None:
        if self.loan is not None:
            self.loan.discard()  # nothing when publish() took it


#: The block of every frame that goes without a loan (nothing to give back: shared).
NO_LOAN = LoanBlock(None)


@dataclass
class PublisherStats:
    """Counters of one stage publisher."""

    published: int = 0
    local_deliveries: int = 0
    messages_built: int = 0
    same_host_sent: int = 0
    same_host_failed: int = 0


class StagePublisher:
    """
    Publishes envelopes: by reference to local inputs, as ROS messages only when needed.

    ``ros_publisher`` is an rclpy publisher (or None for a purely local topic);
    ``to_msg(envelope)`` builds its message and ``key_of(envelope)`` the identity by which
    subscribers in this process recognise the DDS echo of a frame they already have.
    """

    def __init__(self, bus: LocalBus, topic: str, ros_publisher: Any,
                 to_msg: Callable[[Envelope[Any]], Any],
                 key_of: Callable[[Envelope[Any]], Hashable]) -> None:
        self.bus = bus
        self.topic = topic
        self.ros_publisher = ros_publisher
        self._to_msg = to_msg
        self._key_of = key_of
        self.stats = PublisherStats()
        #: Sender of the same-host transport (see ros/same_host.py), or None: DDS only.
        self.same_host: Any = None
        self.counts_max_age_s = COUNTS_MAX_AGE_S
        # The subscriber counts publishes go by, and when they must be read again (monotonic s;
        # 0: at the next publish).
        self._same_host_subscribers = 0
        self._ros_subscriptions = 0
        self._counts_due_s = 0.0

    def loan(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """
        Loan a same-host transport's sample for the next payload's array, or None: your own.

        Only while same-host subscribers exist and no local input does (those get the
        frame by reference, so the stage's own buffer is the cheaper place). The producer
        writes the array into ``loan.array`` and passes the loan to :meth:`publish`; nothing
        is copied then. No loan can be had (all samples held by slow subscribers): None, and
        this frame goes by copy, counted by the transport's sender.
        """
        sender = self.same_host
        if sender is None or self.bus.inputs(self.topic):
            return None
        try:
            self._counts_for_publish()
            return sender.loan(shape, dtype) if self._same_host_subscribers else None
        except Exception:  # noqa: B902 - no loan: this frame goes by copy (counted there)
            return None

    def loaned(self, shape: tuple[int, ...], dtype: Any) -> 'LoanBlock':
        """:meth:`loan` for a ``with`` block: a loan not published in it is given back."""
        loan = self.loan(shape, dtype)
        return NO_LOAN if loan is None else LoanBlock(loan)

    def outside_subscribers(self, same_host_subscribers: int = 0) -> int:
        """Subscriptions on the topic that are neither local inputs nor served same-host (now)."""
        if self.ros_publisher is None:
            return 0
        total = int(self.ros_publisher.get_subscription_count())
        return max(0, total - self.bus.local_ros_subscriptions(self.topic) -
                   same_host_subscribers)

    def counts_changed(self, *_: Any) -> None:
        """Have the next publish read the counts again (a DDS matched event, an activation)."""
        self._counts_due_s = 0.0

    def _counts_for_publish(self) -> None:
        """
        Read the topic's subscriber counts if said changed or ``counts_max_age_s`` old.

        Asking both bindings on every frame cost a frame more than the work it gates.
        """
        now = time.monotonic()
        if now < self._counts_due_s:
            return
        sender = self.same_host
        self._same_host_subscribers = int(sender.subscribers()) if sender is not None else 0
        self._ros_subscriptions = (int(self.ros_publisher.get_subscription_count())
                                   if self.ros_publisher is not None else 0)
        self._counts_due_s = now + self.counts_max_age_s

    def publish(self, envelope: Envelope[Any], loan: Any = None) -> None:
        """
        Deliver one envelope to every subscriber, local ones by reference.

        ``loan``: the same-host sample the payload was written into (zero-copy to other
        processes on this host; only when no local input exists, it is gone after the send).
        """
        self.stats.published += 1
        self._counts_for_publish()
        bus, topic = self.bus, self.topic
        # Payloads the same-host transport cannot carry (traces) go to everyone by DDS.
        # Local inputs get the frame by reference, not by the same-host transport.
        sender = self.same_host
        same_host = (max(0, self._same_host_subscribers -
                         bus.local_same_host_subscriptions(topic))
                     if sender is not None and sender.accepts(envelope.payload) else 0)
        inputs = bus.inputs(topic)
        # Publish to DDS before local delivery: an inline stage runs the rest of the pipeline
        # at once, and the outside subscriber should not wait for it. Local inputs learn the
        # frame's key first, so that its echo through their own ROS subscription is ignored.
        dds = self._ros_subscriptions - bus.local_ros_subscriptions(topic) - same_host > 0
        if inputs and (dds or same_host):
            key = self._key_of(envelope)
            for stage_input in inputs:
                stage_input.remember(key)
        if dds:
            self.stats.messages_built += 1
            self.ros_publisher.publish(self._to_msg(envelope))
        if same_host:
            if sender.send(envelope, loan):
                self.stats.same_host_sent += 1
            else:
                self.stats.same_host_failed += 1
        elif loan is not None:
            loan.discard()
        for stage_input in inputs:
            self.stats.local_deliveries += 1
            stage_input.deliver(envelope)

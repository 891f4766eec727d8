"""
Zero-copy frames between the package's own processes on one host, on iceoryx2 shared memory.

Over 400 lines as one concern: the only module that touches the iceoryx2 binding, so that its
sharp edges (sample lifetimes, blocking sends, dead peers) are handled in one place.

A DDS hop of a frame between two rclpy processes costs milliseconds (serialise, copy, deliver,
deserialise); a shared-memory sample costs a fraction of one, flat in frame size. This module
wraps the iceoryx2 Python binding so that the stages never touch it directly, because the
binding has sharp edges that abort or corrupt a process:

* a numpy view of a received sample does not keep the sample alive, and touching a sample (or a
  port) after its release aborts the process. Here every view handed out is a read-only numpy
  array whose base chain owns a :class:`_SampleHolder`: the sample is released exactly when the
  last view of it (and every view derived from it) is gone, and never before;
* the mapping is read-only but numpy reports it writeable (a write is a SIGSEGV): views are
  marked read-only at once;
* the default backpressure blocks ``send()``: services use safe overflow (keep-latest, the
  oldest unread sample is replaced), so a send never waits for a subscriber;
* a killed subscriber stays counted until dead nodes are cleaned up: :meth:`ShmPublisher.send`
  cleans up when a loan fails and :meth:`ShmPublisher.cleanup_dead` is called periodically.

Every port is guarded by a lock and a closed flag: a call on a closed port raises
:class:`ShmClosed` (a Python error) instead of reaching the binding. Subscribers are woken by
an iceoryx2 event (Notifier/Listener), no polling. Frames lost to keep-latest overflow show as
gaps in the publisher's sequence number and are counted.

What travels: a small ctypes header (sequence numbers, stamps, array shape and dtype, sizes)
and a slice holding a short JSON record (camera, frame_id, the trace so far, the payload's own
fields) followed by the array's bytes, 64-byte aligned. :data:`CODECS` maps payload types to
(array, fields) and back; they are plain, so the transport is tested without ROS.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
import functools
import json
import math
import os
import struct
import threading
import time
from typing import Any, Callable, Optional

from edge_infer_ros.core.frame import Envelope, now_ns, StageTiming
from edge_infer_ros.core.geometry import Letterbox
from edge_infer_ros.core.image import read_only
from edge_infer_ros.core.image_encodings import check_array
from edge_infer_ros.core.payloads import (CandidatePayload, DetectionPayload, ImagePayload,
                                          TensorPayload)
import numpy as np

try:  # optional: without it every topic falls back to DDS, and says so
    import iceoryx2 as _iox2
    _IMPORT_ERROR = ''
except ImportError as _error:  # pragma: no cover - depends on the machine
    _iox2 = None
    _IMPORT_ERROR = f'{type(_error).__name__}: {_error}'

#: Transports a stage can use towards peers on its own host.
_ALIGN = 64
_MAX_NDIM = 4
#: The longest a receive thread waits without a frame (s). stop() wakes it at once through the
#: topic's event; this bound only serves when that wake fails. Short waits cost a composed
#: pipeline its latency: every receiver woke 5 times a second, and a wake that lands while
#: inference runs on both cores takes one of them from it (docs/benchmarks.md).
_WAIT_S = 5.0
#: Seconds between two periodic scans for dead iceoryx2 nodes in one process. A scan reads
#: every node on the host (milliseconds, more with each node a killed process left behind)
#: and frees the dead ones whatever service asked, so one scan serves all of a process's.
DEAD_NODE_SCAN_INTERVAL_S = 5.0


class ShmError(RuntimeError):
    """The shared-memory transport cannot do what was asked (the reason is in the text)."""


class ShmClosed(ShmError):
    """A port or sample was used after it was closed or released."""


def unavailable_reason() -> Optional[str]:
    """Return why iceoryx2 cannot be used here, or None when it can."""
    if _iox2 is None:
        return f'the iceoryx2 Python package is not installed ({_IMPORT_ERROR})'
    return None


def service_name(topic: str, domain: Optional[int] = None) -> str:
    """Return the iceoryx2 service of a resolved ROS topic, per ROS domain like DDS."""
    if domain is None:
        domain = int(os.environ.get('ROS_DOMAIN_ID', '0') or 0)
    return f'edge_infer_ros/d{domain}{topic}'


class FrameHeader(ctypes.Structure):
    """Fixed-size header of every sample (the iceoryx2 user header)."""

    _fields_ = [('pub_seq', ctypes.c_uint64), ('seq', ctypes.c_uint64),
                ('stamp_ns', ctypes.c_int64), ('sent_ns', ctypes.c_int64),
                ('meta_len', ctypes.c_uint32), ('data_offset', ctypes.c_uint32),
                ('data_len', ctypes.c_uint64), ('ndim', ctypes.c_uint32),
                ('shape', ctypes.c_uint32 * _MAX_NDIM), ('dtype', ctypes.c_char * 8),
                ('kind', ctypes.c_char * 16)]

    @staticmethod
    def type_name() -> str:
        """Name iceoryx2 checks when a service is opened (both sides must agree)."""
        return 'edge_infer_ros::FrameHeader1'


#: FrameHeader as one native-aligned record: a sample's header is written and read in one
#: call rather than field by field (each ctypes field access is a Python call per hop).
_HEADER = struct.Struct(f'@QQqqIIQI{_MAX_NDIM}I8s16s')


@functools.lru_cache(maxsize=16)  # bounded: a sample may name any dtype
def _dtype(text: str) -> np.dtype:
    return np.dtype(text)


# -- payload codecs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Codec:
    """How one payload type travels: its array, its other fields, and back."""

    kind: str
    payload_type: type
    split: Callable[[Any], tuple[np.ndarray, dict[str, Any]]]
    join: Callable[[np.ndarray, dict[str, Any]], Any]


def _split_image(payload: ImagePayload) -> tuple[np.ndarray, dict[str, Any]]:
    return payload.image, {'encoding': payload.encoding}


def _join_image(array: np.ndarray, fields: dict[str, Any]) -> ImagePayload:
    encoding = str(fields['encoding'])
    check_array(array, encoding)  # any encoding raw_view accepts; its shape must fit it
    return ImagePayload(array, encoding)


def _split_tensor(payload: TensorPayload) -> tuple[np.ndarray, dict[str, Any]]:
    box = payload.letterbox
    return payload.tensor, {'letterbox': [box.scale, box.pad_x, box.pad_y],
                            'image_width': payload.image_width,
                            'image_height': payload.image_height}


def _join_tensor(array: np.ndarray, fields: dict[str, Any]) -> TensorPayload:
    scale, pad_x, pad_y = (float(v) for v in fields['letterbox'])
    return TensorPayload(array, Letterbox(scale, pad_x, pad_y), int(fields['image_width']),
                         int(fields['image_height']))


def _pack_boxes(payload: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Boxes, scores and class ids as one (N, 6) float64 table (exact for their dtypes)."""
    table = np.empty((len(payload.scores), 6), np.float64)
    table[:, :4], table[:, 4], table[:, 5] = payload.boxes, payload.scores, payload.class_ids
    fields = {'dtypes': [payload.boxes.dtype.str, payload.scores.dtype.str,
                         payload.class_ids.dtype.str],
              'class_names': list(payload.class_names), 'image_width': payload.image_width,
              'image_height': payload.image_height}
    return table, fields


def _unpack_boxes(table: np.ndarray,
                  fields: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return copies (small), so that the sample goes as soon as the payload is built."""
    boxes_dtype, scores_dtype, ids_dtype = (_dtype(d) for d in fields['dtypes'])
    return (read_only(table[:, :4].astype(boxes_dtype)),
            read_only(table[:, 4].astype(scores_dtype)), read_only(table[:, 5].astype(ids_dtype)))


def _split_candidates(payload: CandidatePayload) -> tuple[np.ndarray, dict[str, Any]]:
    table, fields = _pack_boxes(payload)
    box = payload.letterbox
    fields.update(letterbox=[box.scale, box.pad_x, box.pad_y], backend=payload.backend)
    return table, fields


def _join_candidates(table: np.ndarray, fields: dict[str, Any]) -> CandidatePayload:
    scale, pad_x, pad_y = (float(v) for v in fields['letterbox'])
    return CandidatePayload(*_unpack_boxes(table, fields), tuple(fields['class_names']),
                            Letterbox(scale, pad_x, pad_y), int(fields['image_width']),
                            int(fields['image_height']), str(fields['backend']))


def _join_detections(table: np.ndarray, fields: dict[str, Any]) -> DetectionPayload:
    return DetectionPayload(*_unpack_boxes(table, fields), tuple(fields['class_names']),
                            int(fields['image_width']), int(fields['image_height']))


CODECS: dict[str, Codec] = {
    'image': Codec('image', ImagePayload, _split_image, _join_image),
    'tensor': Codec('tensor', TensorPayload, _split_tensor, _join_tensor),
    'candidates': Codec('candidates', CandidatePayload, _split_candidates, _join_candidates),
    'detections': Codec('detections', DetectionPayload, _pack_boxes, _join_detections),
}


#: The payload types that travel, for one isinstance per publish.
_CODEC_TYPES = tuple(codec.payload_type for codec in CODECS.values())


def codec_for(payload: Any) -> Codec:
    """Return the codec of a payload (ShmError when its type cannot travel by shm)."""
    for codec in CODECS.values():
        if isinstance(payload, codec.payload_type):
            return codec
    raise ShmError(f'{type(payload).__name__} cannot travel through shared memory '
                   f'(kinds: {", ".join(CODECS)})')


def _meta_bytes(envelope: Envelope[Any], fields: dict[str, Any]) -> bytes:
    record = {'camera': envelope.camera, 'frame_id': envelope.frame_id, 'fields': fields,
              'trace': [[t.stage, t.node, t.received_ns, t.start_ns, t.end_ns]
                        for t in envelope.trace]}
    return json.dumps(record, separators=(',', ':')).encode()


def _aligned(value: int) -> int:
    return (value + _ALIGN - 1) // _ALIGN * _ALIGN


# -- the binding, behind a lock ---------------------------------------------------------------
class _Service:
    """One topic's publish-subscribe and event services on an iceoryx2 node."""

    def __init__(self, topic: str, domain: Optional[int], buffer_size: int,
                 max_borrows: int, max_subscribers: int) -> None:
        reason = unavailable_reason()
        if reason:
            raise ShmError(reason)
        iox2 = _iox2
        iox2.set_log_level(iox2.LogLevel.Error)
        self.name = service_name(topic, domain)
        try:
            # rclpy owns SIGINT/SIGTERM (shutdown, lifecycle): iceoryx2 must not take them.
            self.node = (iox2.NodeBuilder.new()
                         .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
                         .create(iox2.ServiceType.Ipc))
            name = iox2.ServiceName.new(self.name)
            self.pubsub = (self.node.service_builder(name)
                           .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                           .user_header(FrameHeader)
                           .enable_safe_overflow(True)
                           .subscriber_max_buffer_size(buffer_size)
                           .subscriber_max_borrowed_samples(max_borrows)
                           .max_subscribers(max_subscribers)
                           .max_publishers(2)
                           .open_or_create())
            self.event = self.node.service_builder(name).event().open_or_create()
        except Exception as error:  # noqa: B902 - the binding raises its own exception types
            raise ShmError(f'cannot open iceoryx2 service {self.name}: '
                           f'{type(error).__name__}: {error}') from error

    def subscribers(self) -> int:
        return int(self.pubsub.dynamic_config.number_of_subscribers)

    def publishers(self) -> int:
        return int(self.pubsub.dynamic_config.number_of_publishers)

    def cleanup_dead(self) -> None:
        try:
            self.node.try_cleanup_dead_nodes()
        except Exception:  # noqa: B902 - cleanup is best effort, retried next period
            pass


class _ScanClock:
    """When this process last scanned for dead nodes (shared by its publishers)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last_s = float('-inf')
        self._lock = threading.Lock()

    def due(self, now_s: float) -> bool:
        """Return True (and count the scan as done now) when a scan is due."""
        with self._lock:
            if now_s - self._last_s < self.interval_s:
                return False
            self._last_s = now_s
            return True


_DEAD_NODE_SCANS = _ScanClock(DEAD_NODE_SCAN_INTERVAL_S)


@dataclass
class ShmPublisherStats:
    """Counters of one shared-memory publisher."""

    sent: int = 0
    copied: int = 0
    zero_copy: int = 0
    failed: int = 0
    cleanups: int = 0


class Loan:
    """
    A sample loaned for one frame: a source writes its pixels straight into :attr:`array`.

    Valid until :meth:`ShmPublisher.send` takes it (or :meth:`discard`); the array must not be
    kept: after the send the memory belongs to the subscribers (it stays mapped here, so a late
    read shows other frames rather than crashing; the package never keeps it).
    """

    def __init__(self, publisher: 'ShmPublisher', sample: Any, array: np.ndarray,
                 meta_room: int) -> None:
        self._publisher = publisher
        self._sample = sample
        self.array = array
        self.meta_room = meta_room

    @property
    def taken(self) -> bool:
        """Tell whether the loan was sent or discarded."""
        return self._sample is None

    def _take(self) -> Any:
        sample, self._sample = self._sample, None
        if sample is None:
            raise ShmClosed('this loan was already sent or discarded')
        return sample

    def discard(self) -> None:
        """Give the sample back without sending it."""
        if self._sample is None:
            return
        with self._publisher._lock:
            sample = self._take()
            if not self._publisher._closed:
                sample.delete()


class ShmPublisher:
    """
    The sending end of a topic on shared memory; ``send`` never blocks.

    ``meta_room`` bytes in front of the array hold the JSON record (camera, trace, fields); a
    longer record fails that send, counted.
    """

    def __init__(self, topic: str, *, domain: Optional[int] = None, buffer_size: int = 1,
                 max_borrows: int = 4, max_subscribers: int = 8,
                 meta_room: int = 4096) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._closed = False
        self._service = _Service(topic, domain, buffer_size, max_borrows, max_subscribers)
        self.meta_room = _aligned(meta_room)
        self._pub_seq = 0
        self.stats = ShmPublisherStats()
        self.last_error = ''
        iox2 = _iox2
        try:
            self._publisher = (self._service.pubsub.publisher_builder()
                               .initial_max_slice_len(self.meta_room + 640 * 480 * 3)
                               .allocation_strategy(iox2.AllocationStrategy.PowerOfTwo)
                               .create())
            self._notifier = self._service.event.notifier_builder().create()
        except Exception as error:  # noqa: B902
            raise ShmError(f'cannot create an iceoryx2 publisher on {self._service.name}: '
                           f'{type(error).__name__}: {error}') from error

    @property
    def service(self) -> str:
        """Name of the iceoryx2 service."""
        return self._service.name

    def subscribers(self) -> int:
        """Count the subscribers of the topic on this host (a killed one until cleanup)."""
        with self._lock:
            self._check()
            return self._service.subscribers()

    @staticmethod
    def accepts(payload: Any) -> bool:
        """Tell whether a payload can travel through shared memory (see CODECS)."""
        return isinstance(payload, _CODEC_TYPES)  # one call: every publish asks

    def cleanup_dead(self) -> None:
        """Forget subscribers of processes that died (their samples come back)."""
        with self._lock:
            self._check()
            self._service.cleanup_dead()
            self.stats.cleanups += 1

    def housekeeping(self) -> None:
        """
        Run :meth:`cleanup_dead` where it can matter, and not too often (periodic upkeep).

        A topic without subscribers has no dead one to forget, and one scan per
        :data:`DEAD_NODE_SCAN_INTERVAL_S` serves the whole process; a loan that fails for
        want of samples still cleans up at once.
        """
        if self.subscribers() and _DEAD_NODE_SCANS.due(time.monotonic()):
            self.cleanup_dead()

    def _check(self) -> None:
        if self._closed:
            raise ShmClosed(f'the shared-memory publisher of {self.topic} is closed')

    def _loan_sample(self, size: int) -> Any:
        try:
            return self._publisher.loan_slice_uninit(size)
        except Exception:  # noqa: B902 - LoanError: memory held by dead or slow subscribers
            self._service.cleanup_dead()
            self.stats.cleanups += 1
            return self._publisher.loan_slice_uninit(size)

    def loan(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> Loan:
        """Loan a sample for an array of this shape; write the frame into ``loan.array``."""
        dtype = np.dtype(dtype)
        if len(shape) > _MAX_NDIM:
            raise ShmError(f'arrays of at most {_MAX_NDIM} dimensions travel, got {shape}')
        nbytes = int(np.prod(shape)) * dtype.itemsize
        with self._lock:
            self._check()
            sample = self._loan_sample(self.meta_room + nbytes)
            buffer = (ctypes.c_uint8 * nbytes).from_address(sample.payload_ptr + self.meta_room)
            array = np.frombuffer(buffer, dtype).reshape(shape)
        return Loan(self, sample, array, self.meta_room)

    def send(self, envelope: Envelope[Any], loan: Optional[Loan] = None) -> bool:
        """
        Send one envelope; False (counted, ``last_error`` says why) when it could not go.

        With ``loan`` (whose array the payload holds, written by the source) nothing is
        copied; otherwise the array is copied into a fresh loan once.
        """
        try:
            codec = codec_for(envelope.payload)
            array, fields = codec.split(envelope.payload)
            meta = _meta_bytes(envelope, fields)
            if loan is None:
                loan = self.loan(array.shape, array.dtype)
                np.copyto(loan.array, array)
                self.stats.copied += 1
            else:
                if loan.array.shape != array.shape or loan.array.dtype != array.dtype:
                    loan.discard()
                    raise ShmError('the payload does not hold the loaned array')
                self.stats.zero_copy += 1
            if len(meta) > loan.meta_room:
                loan.discard()
                raise ShmError(f'frame record of {len(meta)} bytes exceeds the '
                               f'{loan.meta_room} bytes reserved for it')
            with self._lock:
                self._check()
                sample = loan._take()
                ctypes.memmove(sample.payload_ptr, meta, len(meta))
                dims = array.shape + (0,) * (_MAX_NDIM - array.ndim)
                _HEADER.pack_into(memoryview(sample.user_header().contents).cast('B'), 0,
                                  self._pub_seq, envelope.seq, envelope.stamp_ns, now_ns(),
                                  len(meta), loan.meta_room, array.nbytes, array.ndim, *dims,
                                  array.dtype.str.encode(), codec.kind.encode())
                sample.assume_init().send()
                self._notifier.notify()
                self._pub_seq += 1
            self.stats.sent += 1
            return True
        except Exception as error:  # noqa: B902 - never take the control path down
            self.stats.failed += 1
            self.last_error = f'{type(error).__name__}: {error}'
            return False

    def close(self) -> None:
        """Release the ports (safe to call twice); later calls raise ShmClosed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._notifier.delete()
            self._publisher.delete()


# -- receiving --------------------------------------------------------------------------------
class _SampleHolder:
    """Owns one received sample; releases it once, when the last view of it is gone."""

    __slots__ = ('_sample', '_owner', '__weakref__')

    def __init__(self, sample: Any, owner: 'ShmSubscriber') -> None:
        self._sample = sample
        self._owner = owner  # keeps the port's wrapper alive while a sample is held
        owner._borrowed += 1

    def release(self) -> None:
        sample, self._sample = self._sample, None
        if sample is None:
            return
        owner = self._owner
        with owner._lock:
            owner._borrowed -= 1
            sample.delete()

    def __del__(self) -> None:
        self.release()


def _view(holder: _SampleHolder, address: int, nbytes: int, dtype: np.dtype,
          shape: tuple[int, ...]) -> np.ndarray:
    """Return a read-only array over shared memory whose base chain owns the holder."""
    buffer: Any = (ctypes.c_uint8 * nbytes).from_address(address)
    buffer._eir_holder = holder  # the array -> buffer -> holder: no view outlives the sample
    array: np.ndarray = np.frombuffer(buffer, dtype).reshape(shape)
    array.flags.writeable = False  # the mapping is read-only: a write would be a SIGSEGV
    return array


@dataclass
class ShmSubscriberStats:
    """Counters of one shared-memory subscriber."""

    received: int = 0
    dropped: int = 0  # replaced by newer frames before this subscriber took them (keep-latest)
    errors: int = 0   # malformed samples or borrow limit reached
    malformed: int = 0  # samples whose header or record could not be read


class ShmSubscriber:
    """
    The receiving end of a topic on shared memory: ``on_frame(envelope, received_ns)``.

    A thread waits on the topic's iceoryx2 event and hands each sample on as an envelope
    whose payload array is a read-only view of the shared memory; the sample is held exactly
    as long as that view (or any view derived from it) exists. Keep-latest: a subscriber that
    falls behind loses the older frames, counted in ``stats.dropped``.
    """

    def __init__(self, topic: str, on_frame: Callable[[Envelope[Any], int], None], *,
                 domain: Optional[int] = None, buffer_size: int = 1, max_borrows: int = 4,
                 max_subscribers: int = 8,
                 on_error: Optional[Callable[[str], None]] = None,
                 on_malformed: Optional[Callable[[str], None]] = None) -> None:
        self.topic = topic
        self._on_frame = on_frame
        self._on_error = on_error
        self._on_malformed = on_malformed  # a refused sample: its receiver counts it
        self._lock = threading.RLock()
        self._closed = False
        self._borrowed = 0
        self._service = _Service(topic, domain, buffer_size, max_borrows, max_subscribers)
        self._last_pub_seq: dict[Any, int] = {}  # per publisher: gaps are frames lost
        self.stats = ShmSubscriberStats()
        self.last_error = ''
        try:
            self._subscriber = self._service.pubsub.subscriber_builder().create()
            self._listener = self._service.event.listener_builder().create()
        except Exception as error:  # noqa: B902
            raise ShmError(f'cannot create an iceoryx2 subscriber on {self._service.name}: '
                           f'{type(error).__name__}: {error}') from error
        self._thread: Optional[threading.Thread] = None
        self._running = threading.Event()

    @property
    def service(self) -> str:
        """Name of the iceoryx2 service."""
        return self._service.name

    @property
    def borrowed(self) -> int:
        """Count the samples held right now (views still alive)."""
        return self._borrowed

    def publishers(self) -> int:
        """Count the publishers of the topic on this host."""
        with self._lock:
            if self._closed:
                raise ShmClosed(f'the shared-memory subscriber of {self.topic} is closed')
            return self._service.publishers()

    def start(self) -> None:
        """Start the receive thread."""
        if self._thread is not None:
            return
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name=f'eir:shm{self.topic}',
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the receive thread (views already handed out stay valid)."""
        self._running.clear()
        if self._thread is not None:
            self._wake()
            self._thread.join(timeout=2.0 + _WAIT_S)
            self._thread = None

    def _wake(self) -> None:
        """Wake the receive thread now rather than at its next timeout (a faster close)."""
        try:
            with self._lock:
                if self._closed:
                    return
                notifier = self._service.event.notifier_builder().create()
                notifier.notify()
                notifier.delete()
        except Exception:  # noqa: B902 - it wakes at its timeout anyway
            pass

    def close(self) -> None:
        """Stop and release the ports; held samples are released by their views."""
        self.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._listener.delete()
            self._subscriber.delete()

    def _error(self, text: str) -> None:
        self.last_error = text
        if self._on_error is not None:
            self._on_error(text)
        self.stats.errors += 1  # after the reason: whoever sees the count sees why

    def _loop(self) -> None:
        timeout = _iox2.Duration.from_secs_f64(_WAIT_S)
        while self._running.is_set():
            try:
                with self._lock:
                    if self._closed:
                        return
                    listener = self._listener
                listener.timed_wait(timeout)  # no lock: close() waits for this thread first
            except Exception as error:  # noqa: B902
                self._error(f'waiting for frames failed: {type(error).__name__}: {error}')
                continue
            self.drain()

    def drain(self) -> int:
        """Take every waiting sample and hand it on; return how many were handed on."""
        count = 0
        while True:
            with self._lock:
                if self._closed:
                    return count
                try:
                    sample = self._subscriber.receive()
                except Exception as error:  # noqa: B902 - ReceiveError: ExceedsMaxBorrows
                    self._error(f'receive failed: {error} ({self._borrowed} samples held '
                                'by stages)')
                    return count
                if sample is None:
                    return count
                received_ns = time.monotonic_ns()
                holder = _SampleHolder(sample, self)
            try:
                envelope = self._envelope(holder, sample)
            except Exception as error:  # noqa: B902 - a malformed sample is counted, not fatal
                holder.release()
                text = f'malformed sample on {self.topic}: {type(error).__name__}: {error}'
                if self._on_malformed is not None:
                    self.last_error = text
                    self._on_malformed(text)
                    self.stats.malformed += 1
                else:
                    self._error(text)
                continue
            del sample, holder  # from here on only the envelope's views hold the sample
            self.stats.received += 1
            count += 1
            try:
                self._on_frame(envelope, received_ns)
            except Exception as error:  # noqa: B902 - the receive thread must not die
                self._error(f'handling a frame failed: {type(error).__name__}: {error}')

    def _envelope(self, holder: _SampleHolder, sample: Any) -> Envelope[Any]:
        (pub_seq, seq, stamp_ns, _, meta_len, offset, data_len, ndim, *dims, dtype_text,
         kind_text) = _HEADER.unpack_from(bytes(sample.user_header().contents))
        publisher = sample.header.publisher_id.value
        last = self._last_pub_seq.get(publisher)
        if last is not None and pub_seq > last + 1:
            self.stats.dropped += pub_seq - last - 1
        if last is None and len(self._last_pub_seq) >= 64:  # bounded: forget the oldest
            self._last_pub_seq.pop(next(iter(self._last_pub_seq)))
        self._last_pub_seq[publisher] = pub_seq
        kind = kind_text.rstrip(b'\0').decode()
        codec = CODECS.get(kind)
        if codec is None:
            raise ShmError(f'unknown payload kind {kind!r}')
        if not 0 < ndim <= _MAX_NDIM:
            raise ShmError(f'bad number of dimensions {ndim}')
        shape = tuple(dims[:ndim])
        dtype = _dtype(dtype_text.rstrip(b'\0').decode())
        nbytes = math.prod(shape) * dtype.itemsize
        total = int(sample.header.number_of_elements)
        if nbytes != data_len or offset + nbytes > total or meta_len > offset:
            raise ShmError(f'sizes do not add up: shape {shape} of {dtype} in a sample of '
                           f'{total} bytes at offset {offset}')
        address = sample.payload_ptr
        record = json.loads(ctypes.string_at(address, meta_len))
        array = _view(holder, address + offset, nbytes, dtype, shape)
        payload = codec.join(array, record['fields'])
        trace = tuple(StageTiming(str(s), str(n), int(r), int(b), int(e))
                      for s, n, r, b, e in record['trace'])
        return Envelope(str(record['camera']), seq, stamp_ns,
                        str(record['frame_id']), trace, payload)

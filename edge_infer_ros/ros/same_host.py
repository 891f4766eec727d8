"""
Same-host transports: how frames go between the package's own processes on one host.

DDS always carries every frame to whoever listens; a same-host transport carries them as well
between this package's processes, cheaper. Adding one is a module with a class like
:class:`~edge_infer_ros.ros.iceoryx2_transport.Iceoryx2` and one entry in :data:`SAME_HOST`;
the ports (:mod:`edge_infer_ros.ros.ports`) and the ``transport.same_host`` choices take it
from there.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.ros.iceoryx2_transport import Iceoryx2


class SameHostTransport(Protocol):
    """What a same-host transport gives the ports (senders and receivers, duck-typed)."""

    def unavailable_reason(self) -> Optional[str]:
        """Return why it cannot be used in this process, or None when it can."""

    def sender(self, topic: str) -> Any:
        """
        Open the sending end of a resolved topic (raise RuntimeError with why it cannot).

        It has ``subscribers()``, ``accepts(payload)``, ``send(envelope, loan) -> bool``,
        ``loan(shape, dtype)`` (raise when it has none), ``cleanup_dead()``, ``close()``.
        """

    def receiver(self, topic: str, on_frame: Callable[[Envelope[Any], int], None],
                 on_error: Callable[[str], None], on_malformed: Callable[[str], None]) -> Any:
        """
        Open the receiving end of a resolved topic (raise RuntimeError with why it cannot).

        It has ``start()``, ``close()``, ``topic`` and ``stats.received`` / ``stats.dropped``
        (frames taken / replaced before the stage took them).
        """


#: The values of ``transport.same_host``: a factory of the transport, None for DDS alone.
SAME_HOST: dict[str, Optional[Callable[[], SameHostTransport]]] = {
    'dds': None,
    'iceoryx2': Iceoryx2,
}


def choose_same_host(requested: str) -> tuple[str, Optional[SameHostTransport], str]:
    """Return the transport a stage uses on this host (name, transport) and, on a fallback, why."""
    if requested not in SAME_HOST:
        raise ValueError(f'transport.same_host must be one of {tuple(SAME_HOST)}, '
                         f'got {requested!r}')
    make = SAME_HOST[requested]
    if make is None:
        return requested, None, ''
    transport = make()
    reason = transport.unavailable_reason()
    if reason:
        return 'dds', None, f'transport.same_host is {requested} but {reason}: using DDS'
    return requested, transport, ''

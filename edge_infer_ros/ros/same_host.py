"""
Same-host transports: how frames go between the package's own processes on one host.

DDS always carries every frame to whoever listens; a same-host transport carries them as well
between this package's processes, cheaper. Adding one is a module with a class like
:class:`~edge_infer_ros.ros.iceoryx2_transport.Iceoryx2` and one entry in :data:`SAME_HOST`;
the ports (:mod:`edge_infer_ros.ros.ports`) and the ``transport.same_host`` choices take it
from there. ``auto`` (the default) takes the first registered transport that is usable here.
"""

from __future__ import annotations

from dataclasses import dataclass
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
        ``loan(shape, dtype)`` (raise when it has none), ``housekeeping()`` (the periodic
        upkeep, with diagnostics: forget subscribers of dead processes), ``close()``.
        """

    def receiver(self, topic: str, on_frame: Callable[[Envelope[Any], int], None],
                 on_error: Callable[[str], None], on_malformed: Callable[[str], None]) -> Any:
        """
        Open the receiving end of a resolved topic (raise RuntimeError with why it cannot).

        It has ``start()``, ``close()``, ``topic`` and ``stats.received`` / ``stats.dropped``
        (frames taken / replaced before the stage took them).
        """


#: The same-host transports by name: a factory of the transport, None for DDS alone.
SAME_HOST: dict[str, Optional[Callable[[], SameHostTransport]]] = {
    'dds': None,
    'iceoryx2': Iceoryx2,
}

#: ``transport.same_host`` value: the first transport of SAME_HOST usable here, else DDS.
AUTO = 'auto'


def same_host_choices() -> tuple[str, ...]:
    """Return the values ``transport.same_host`` takes: auto, then every registered name."""
    return (AUTO,) + tuple(SAME_HOST)


@dataclass(frozen=True)
class SameHostChoice:
    """The same-host transport a stage uses, and why (a diagnostic value)."""

    name: str
    transport: Optional[SameHostTransport]
    why: str
    #: Asked for by name and not usable here: a WARN, not a note.
    fell_back: bool = False


def choose_same_host(requested: str) -> SameHostChoice:
    """Return the transport a stage uses on this host for ``transport.same_host``."""
    if requested == AUTO:
        missing = []
        for name, make in SAME_HOST.items():
            if make is None:
                continue
            transport = make()
            reason = transport.unavailable_reason()
            if not reason:
                return SameHostChoice(name, transport, f'auto: {name} is usable on this host')
            missing.append(f'{name}: {reason}')
        return SameHostChoice('dds', None, f'auto: {"; ".join(missing) or "none registered"}')
    if requested not in SAME_HOST:
        raise ValueError(f'transport.same_host must be one of {same_host_choices()}, '
                         f'got {requested!r}')
    make = SAME_HOST[requested]
    if make is None:
        return SameHostChoice(requested, None, 'asked for')
    transport = make()
    reason = transport.unavailable_reason()
    if reason:
        return SameHostChoice('dds', None, f'transport.same_host is {requested} but {reason}: '
                              'using DDS', fell_back=True)
    return SameHostChoice(requested, transport, 'asked for')

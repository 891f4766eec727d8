"""
Frozen records that are cheap to build: a frame's envelope, its timings, its payloads.

Why: every stage builds a few of them per frame, and after the camera's idle gap a frozen
dataclass's generated ``__init__`` (``object.__setattr__`` looked up and called once per field)
is among the slowest lines of a hop (docs/benchmarks.md, round 3). The ``__init__`` made here
calls each slot's own setter, bound once; the record is as frozen as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

RecordT = TypeVar('RecordT', bound=type)


def fast_init(cls: RecordT) -> RecordT:
    """
    Give a frozen, slotted dataclass an ``__init__`` that sets each slot through its descriptor.

    Same signature, defaults and result as the generated one; setting a field afterwards still
    raises, and ``dataclasses.replace`` goes through it. A class whose generated ``__init__``
    does more (``__post_init__``, ``InitVar``, ``init=False``, keyword-only fields, default
    factories) or that is not frozen and slotted is refused with TypeError.
    """
    params = getattr(cls, '__dataclass_params__', None)
    if params is None or not params.frozen or '__slots__' not in cls.__dict__:
        raise TypeError(f'{cls.__name__} is not a frozen dataclass with slots')
    fields = dataclasses.fields(cls)
    if hasattr(cls, '__post_init__') or len(fields) != len(getattr(cls, '__dataclass_fields__')):
        raise TypeError(f'{cls.__name__} has __post_init__ or InitVar fields')
    namespace: dict[str, Any] = {}
    arguments, body = [], []
    for field in fields:
        if not field.init or field.kw_only or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f'{cls.__name__}.{field.name}: init=False, keyword-only or a '
                            'default factory')
        namespace[f'_set_{field.name}'] = cls.__dict__[field.name].__set__
        if field.default is dataclasses.MISSING:
            arguments.append(field.name)
        else:
            namespace[f'_default_{field.name}'] = field.default
            arguments.append(f'{field.name}=_default_{field.name}')
        body.append(f'    _set_{field.name}(self, {field.name})\n')
    exec(f"def __init__(self, {', '.join(arguments)}):\n{''.join(body) or '    pass'}\n",
         namespace)
    init = namespace['__init__']
    init.__qualname__ = f'{cls.__qualname__}.__init__'
    init.__module__ = cls.__module__
    init.__annotations__ = dict(getattr(cls, '__init__').__annotations__)
    setattr(cls, '__init__', init)
    return cls

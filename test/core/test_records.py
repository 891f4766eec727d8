"""Tests of the fast ``__init__`` of the frozen records every frame builds."""

from __future__ import annotations

import dataclasses
from typing import Any

from edge_infer_ros.core import frame, payloads
from edge_infer_ros.core.records import fast_init
import pytest

#: Every record given the fast __init__, with values for its fields in order.
RECORDS: list[tuple[type, tuple[Any, ...]]] = [
    (frame.StageTiming, ('detector', '/detector', 1, 2, 3)),
    (frame.Envelope, ('camera', 7, 5, 'optical', (), 'payload')),
    (frame.FrameTrace, ('camera', 7, 5, 'optical', ())),
    (payloads.ImagePayload, ('image', 'bgr8', 2, (640, 480))),
    (payloads.TensorPayload, ('tensor', 'letterbox', 640, 480, 'image', 'rgb8')),
    (payloads.CandidatePayload, ('boxes', 'scores', 'ids', ('ball',), 'letterbox', 640, 480,
                                 'onnxruntime', 'image', 'bgr8', True)),
    (payloads.DetectionPayload, ('boxes', 'scores', 'ids', ('ball',), 640, 480, 'image',
                                 False, 'bgr8', True)),
    (payloads.Command, (0.5, -0.25, False, 'tracking ball', 3, 1)),
]


def _built_as_dataclasses_build(cls: type, values: tuple[Any, ...]) -> Any:
    """Build a record as the generated __init__ does: object.__setattr__ per field."""
    record = object.__new__(cls)
    for field, value in zip(dataclasses.fields(cls), values):
        object.__setattr__(record, field.name, value)
    return record


@pytest.mark.parametrize('cls, values', RECORDS, ids=[c.__name__ for c, _ in RECORDS])
def test_records_are_built_as_before_and_stay_frozen(cls, values) -> None:
    fields = dataclasses.fields(cls)
    assert len(values) == len(fields)  # the table above follows the class
    expected = _built_as_dataclasses_build(cls, values)
    assert cls(*values) == expected
    assert cls(**{f.name: v for f, v in zip(fields, values)}) == expected
    # Fields with defaults may be left out, and get the defaults.
    required = [f for f in fields if f.default is dataclasses.MISSING]
    defaults = tuple(f.default for f in fields[len(required):])
    assert cls(*values[:len(required)]) == \
        _built_as_dataclasses_build(cls, values[:len(required)] + defaults)
    record = cls(*values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, fields[0].name, values[0])
    replaced = dataclasses.replace(record, **{fields[-1].name: 'other'})
    assert getattr(replaced, fields[-1].name) == 'other' and replaced != record
    assert hash(cls(*values)) == hash(expected)
    with pytest.raises(TypeError):
        cls(*values[:len(required) - 1])
    with pytest.raises(TypeError):
        cls(*values, unknown=1)


def test_classes_whose_init_does_more_are_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class WithPostInit:
        value: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        values: list = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class WithoutSlots:
        value: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        value: int

    for cls in (WithPostInit, WithFactory, WithoutSlots, NotFrozen):
        with pytest.raises(TypeError):
            fast_init(cls)

    @fast_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Empty:
        pass
    assert Empty() == Empty()

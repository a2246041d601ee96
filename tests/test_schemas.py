"""The base schema every API schema inherits."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError, fields

from schemas.base import StrictSchema


class _Inner(StrictSchema):
    note = fields.String()


class _Outer(StrictSchema):
    name = fields.String()
    tags = fields.List(fields.String())
    extra = fields.Dict(keys=fields.String(), values=fields.String())
    inner = fields.Nested(_Inner)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"name": "a\x00"}, "name"),
        ({"tags": ["ok", "b\x00"]}, "tags.1"),
        ({"extra": {"k": "v\x00"}}, "extra.k"),
        ({"extra": {"k\x00": "v"}}, "extra.k\x00"),
        ({"inner": {"note": "\x00"}}, "inner.note"),
    ],
)
def test_nul_characters_are_refused_wherever_they_hide(
    payload: dict[str, object], where: str
) -> None:
    with pytest.raises(ValidationError) as error:
        _Outer().load(payload)
    assert where in error.value.messages


def test_unknown_fields_are_refused_in_nested_schemas_too() -> None:
    with pytest.raises(ValidationError) as error:
        _Outer().load({"inner": {"note": "x", "surprise": 1}})
    assert error.value.messages == {"inner": {"surprise": ["Unknown field."]}}

"""Field types of the domain: UK postcodes, UPRNs, NHS numbers, bounded dates and code lists."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from marshmallow import ValidationError, fields, validate

from service.context import RECORD_ID_PATTERN
from service.crypto.normalise import normalise_nhs_number, normalise_postcode, normalise_text


class Pattern(validate.Regexp):
    """A regular expression the whole value must match (with ``match``, ``$`` lets a final
    newline through; the OpenAPI document's pattern does not)."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


EARLIEST, LATEST = date(1900, 1, 1), date(2100, 12, 31)
IN_RANGE = validate.Range(min=EARLIEST, max=LATEST, error="Must be between 1900 and 2100.")
# 1 to 12 digits, not all zeros (a UPRN is a positive number).
UPRN = [
    validate.Length(min=1, max=12, error="A UPRN is 1 to 12 digits."),
    Pattern(r"^0*[1-9][0-9]*$", error="A UPRN is a positive number of 1 to 12 digits."),
]
# The shape of our ids (service.context.RECORD_ID_PATTERN): anything else cannot name a record.
RECORD_ID = Pattern(f"^{RECORD_ID_PATTERN.pattern}$", error="Not a record id.")


def _checked_by(normalise: Any) -> Any:
    def check(value: str) -> None:
        try:
            normalise(value)
        except (ValueError, TypeError) as error:
            raise ValidationError(str(error)) from error

    return check


def postcode(**kwargs: Any) -> fields.String:
    """A UK postcode, in any case, spaced or not."""
    return fields.String(
        validate=[
            validate.Length(min=5, max=10),
            Pattern(r"^[A-Za-z0-9 ]+$", error="Letters, digits and spaces only."),
            _checked_by(normalise_postcode),
        ],
        metadata={"example": "ME14 2AB"},
        **kwargs,
    )


def nhs_number(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=[
            validate.Length(min=10, max=14),
            Pattern(r"^[0-9 -]+$", error="Digits, spaces and hyphens only."),
            _checked_by(normalise_nhs_number),
        ],
        metadata={"description": "10 digits with a valid modulus-11 check digit"},
        **kwargs,
    )


def _has_letters_or_digits(value: str) -> None:
    if not normalise_text(value):
        raise ValidationError("Must contain a letter or a digit.")


def searchable(max_length: int, *, required: bool = False, **kwargs: Any) -> fields.String:
    """Free text that look-ups compare normalised (case, spacing and punctuation aside): it
    must keep a letter or digit once normalised, or it could never be matched."""
    return fields.String(
        required=required,
        validate=[validate.Length(min=1, max=max_length), _has_letters_or_digits],
        **kwargs,
    )


class IsoDate(fields.Date):
    """A date written YYYY-MM-DD, as the document says (marshmallow also takes "20240101" and
    "2024-W01-1")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Rfc3339DateTime(fields.AwareDateTime):
    """A moment with its zone, as RFC 3339 writes it (Python also takes "20240101T00Z",
    hours alone, and a space for the T)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        naive = isinstance(value, str) and _NAIVE.fullmatch(value)  # refused as naive, below
        if not naive and not (isinstance(value, str) and _RFC3339.fullmatch(value)):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        return super()._deserialize(value, attr, data, **kwargs)


_LOCAL_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
_NAIVE = re.compile(_LOCAL_TIME)
_RFC3339 = re.compile(_LOCAL_TIME + r"([Zz]|[+-][0-9]{2}:[0-9]{2})")


class StrictBoolean(fields.Boolean):
    """JSON's true or false (marshmallow also takes 1, "yes", "on"...)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryBoolean(fields.Boolean):
    """A query parameter written true or false."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value not in ("true", "false"):
            raise self.make_error("invalid")
        return bool(value == "true")


class QueryInteger(fields.Integer):
    """A query parameter of decimal digits (marshmallow also takes "1_0", " 1" and "١")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not _INTEGER.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


_INTEGER = re.compile(r"-?[0-9]{1,19}")


def day(**kwargs: Any) -> IsoDate:
    return IsoDate(validate=IN_RANGE, **kwargs)


def codes(
    choices: tuple[str, ...] | list[str], *, at_least: int = 0, **kwargs: Any
) -> fields.List[Any]:
    """A list of distinct codes from ``choices``."""

    def distinct(values: list[str]) -> None:
        if len(set(values)) != len(values):
            raise ValidationError("Each at most once.")

    return fields.List(
        fields.String(validate=validate.OneOf(choices)),
        validate=[validate.Length(min=at_least, max=len(choices)), distinct],
        metadata={"uniqueItems": True, **kwargs.pop("metadata", {})},
        **kwargs,
    )


def ids(max_items: int, **kwargs: Any) -> fields.List[Any]:
    """A list of record ids."""
    return fields.List(
        fields.String(validate=RECORD_ID), validate=validate.Length(max=max_items), **kwargs
    )


def record_id(**kwargs: Any) -> fields.String:
    """The id of one of our records (anything else cannot name one)."""
    return fields.String(validate=RECORD_ID, **kwargs)

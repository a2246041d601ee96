from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.crypto.normalise import (
    normalise_address_line,
    normalise_date,
    normalise_nhs_number,
    normalise_postcode,
    normalise_text,
    normalise_uprn,
)


def is_valid_nhs_number(value: object) -> bool:
    try:
        normalise_nhs_number(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        return False
    return True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("O'Brien-Smith ", "obrien smith"),
        ("obrien smith", "obrien smith"),
        ("O\u2019BRIEN\u2013SMITH", "obrien smith"),
        ("  St.  John's\tRoad\n", "st johns road"),
        ("Smith,John", "smith john"),
        ("Stra\u00dfe", "strasse"),
        ("\uff33\uff2d\uff29\uff34\uff28", "smith"),  # Full-width letters.
        ("Zo\u00eb", "zo\u00eb"),
        ("Zoe\u0308", "zo\u00eb"),  # Combining diaeresis composes to the same form.
        ("sm\u200bith", "smith"),  # Zero-width space is dropped.
        ("", ""),
        ("---", ""),
    ],
)
def test_normalise_text(raw: str, expected: str) -> None:
    assert normalise_text(raw) == expected


@given(st.text())
def test_normalise_text_is_idempotent(text: str) -> None:
    once = normalise_text(text)
    assert normalise_text(once) == once
    assert once == once.strip() and "  " not in once


def test_normalise_address_line_keeps_abbreviations() -> None:
    assert normalise_address_line("Flat 3, 12 High St.") == "flat 3 12 high st"
    assert normalise_address_line("Flat 3") != normalise_address_line("Flat 33")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("me1 2ab", "ME1 2AB"),
        ("ME1  2AB", "ME1 2AB"),
        ("me12ab", "ME1 2AB"),
        (" sw1a\t1aa ", "SW1A 1AA"),
        ("W1A 0AX", "W1A 0AX"),
        ("M1 1AE", "M1 1AE"),
        ("B33 8TH", "B33 8TH"),
        ("CR2 6XH", "CR2 6XH"),
        ("DN55 1PT", "DN55 1PT"),
        ("EC1A 1BB", "EC1A 1BB"),
        ("gir 0aa", "GIR 0AA"),
    ],
)
def test_normalise_postcode_valid(raw: str, expected: str) -> None:
    assert normalise_postcode(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "ME1", "ME1 2A", "ME1 2ABC", "QE1 2AB", "ME1 2CB", "1ME 2AB", "ME1-2AB", "AAA1 2AB"],
)
def test_normalise_postcode_invalid(raw: str) -> None:
    with pytest.raises(ValueError, match="postcode"):
        normalise_postcode(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("100062000000", "100062000000"), (" 000123 ", "123"), ("1", "1"), (42, "42")],
)
def test_normalise_uprn_valid(raw: str | int, expected: str) -> None:
    assert normalise_uprn(raw) == expected


@pytest.mark.parametrize("raw", ["", "0", "000", "1234567890123", "12a", "-5", "\u0661\u0662", -5])
def test_normalise_uprn_invalid(raw: str | int) -> None:
    with pytest.raises(ValueError):
        normalise_uprn(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("943 476 5919", "9434765919"),
        ("9434765919", "9434765919"),
        ("943-476-5919", "9434765919"),
        ("401 023 2137", "4010232137"),
        ("4010232110", "4010232110"),  # Remainder 0 -> 11 -> check digit 0.
        ("1000000001", "1000000001"),  # Weighted sum 10 -> remainder 10 -> check digit 1.
    ],
)
def test_normalise_nhs_number_valid(raw: str, expected: str) -> None:
    assert normalise_nhs_number(raw) == expected
    assert is_valid_nhs_number(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "9434765918",  # Wrong check digit.
        "4010232138",
        "1000000000",  # Weighted sum 10 -> check digit 1, not 0.
        "943476591",  # Nine digits.
        "94347659190",
        "94347659a9",
        "",
    ],
)
def test_normalise_nhs_number_invalid(raw: str) -> None:
    with pytest.raises(ValueError):
        normalise_nhs_number(raw)
    assert not is_valid_nhs_number(raw)


@pytest.mark.parametrize("prefix", ["401023203", "401023217", "000000006"])
def test_nhs_check_digit_ten_is_always_invalid(prefix: str) -> None:
    # These prefixes have weighted sum % 11 == 1, so the check digit would be 10.
    assert sum(int(d) * w for d, w in zip(prefix, range(10, 1, -1), strict=True)) % 11 == 1
    for last in "0123456789":
        assert not is_valid_nhs_number(prefix + last)


def test_is_valid_nhs_number_non_string() -> None:
    assert not is_valid_nhs_number(9434765919)
    assert not is_valid_nhs_number(None)


def test_normalise_date() -> None:
    assert normalise_date(date(1980, 1, 2)) == "1980-01-02"
    assert normalise_date(" 1980-01-02 ") == "1980-01-02"
    for bad in ("1980-02-30", "02/01/1980", "19800102", "1980-1-2", ""):
        with pytest.raises(ValueError):
            normalise_date(bad)
    with pytest.raises(TypeError):
        normalise_date(datetime(1980, 1, 2, 12, 0))


def test_non_string_input_raises_type_error() -> None:
    with pytest.raises(TypeError):
        normalise_text(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        normalise_postcode(12345)  # type: ignore[arg-type]

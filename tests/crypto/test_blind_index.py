import os
from datetime import date

import pytest

from service.crypto import (
    NHS_NUMBER,
    PERSON_NAME_DOB,
    POSTCODE_ADDRESS,
    PURPOSES,
    UPRN,
    BlindIndexer,
)


@pytest.fixture
def indexer() -> BlindIndexer:
    return BlindIndexer(os.urandom(32))


def test_index_is_16_bytes_and_deterministic(indexer: BlindIndexer) -> None:
    value = indexer.compute(UPRN, "100062000000")
    assert len(value) == 16
    assert indexer.compute(UPRN, "100062000000") == value
    assert BlindIndexer(indexer._root_key).compute(UPRN, "100062000000") == value


def test_equal_for_equivalent_postcodes(indexer: BlindIndexer) -> None:
    a = indexer.postcode_address("me1 2ab", "Flat 3, 12 High St.")
    b = indexer.postcode_address("ME1  2AB", "flat 3 12 high st")
    c = indexer.postcode_address("me12ab", "FLAT 3  12 HIGH ST")
    assert a == b == c
    assert a != indexer.postcode_address("ME1 2AD", "flat 3 12 high st")


def test_differs_across_purposes_for_same_input(indexer: BlindIndexer) -> None:
    assert indexer.compute(UPRN, "9434765919") != indexer.compute(NHS_NUMBER, "9434765919")
    pair = ("smith", "1980-01-02")
    assert indexer.compute(PERSON_NAME_DOB, *pair) != indexer.compute(POSTCODE_ADDRESS, *pair)


def test_differs_across_root_keys(indexer: BlindIndexer) -> None:
    other = BlindIndexer(os.urandom(32))
    assert indexer.uprn("123") != other.uprn("123")


def test_parts_are_joined_unambiguously(indexer: BlindIndexer) -> None:
    assert indexer.compute(PERSON_NAME_DOB, "ab", "c") != indexer.compute(
        PERSON_NAME_DOB, "a", "bc"
    )


def test_convenience_methods_normalise(indexer: BlindIndexer) -> None:
    assert indexer.uprn(" 000123 ") == indexer.uprn(123) == indexer.compute(UPRN, "123")
    assert indexer.nhs_number("943-476-5919") == indexer.compute(NHS_NUMBER, "9434765919")
    assert indexer.person("O'Brien-Smith ", date(1980, 1, 2)) == indexer.person(
        "OBRIEN SMITH", "1980-01-02"
    )
    assert indexer.person("Smith", "1980-01-02") != indexer.person("Smith", "1980-01-03")


def test_invalid_values_raise(indexer: BlindIndexer) -> None:
    with pytest.raises(ValueError):
        indexer.nhs_number("9434765918")
    with pytest.raises(ValueError):
        indexer.postcode_address("not a postcode", "1 High St")
    with pytest.raises(ValueError):
        indexer.person("---", "1980-01-02")  # Normalises to empty.


def test_unknown_purpose_and_wrong_arity(indexer: BlindIndexer) -> None:
    with pytest.raises(ValueError, match="unknown"):
        indexer.compute("person.email", "x")
    with pytest.raises(ValueError):
        indexer.compute(UPRN, "1", "2")
    with pytest.raises(ValueError):
        indexer.compute(PERSON_NAME_DOB, "smith")


def test_purposes_constants() -> None:
    assert set(PURPOSES) == {
        "household.uprn",
        "household.postcode_line1",
        "person.family_name_dob",
        "person.nhs_number",
    }


def test_root_key_validation_and_repr() -> None:
    with pytest.raises(ValueError):
        BlindIndexer(b"short")
    key = os.urandom(32)
    indexer = BlindIndexer(key)
    indexer.uprn("1")
    assert key.hex() not in repr(indexer) and repr(key) not in repr(indexer)

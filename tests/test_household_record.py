"""Assembling a household's record from its statement's rows (service.warnings.record_of)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from service.models.agency import AgencyContact
from service.models.encrypted import SealedRow
from service.models.incident import Incident, IncidentRow
from service.models.warning import WarningRow
from service.warnings import record_of


def _values(row_type: type[SealedRow], **columns: Any) -> list[Any]:
    return [columns.get(name) for name in row_type.stored]


def test_an_incident_resting_on_a_warning_not_read_is_left_out() -> None:
    # One statement reads one snapshot, so this cannot come from the database today; the guard
    # stays (an incident of a change newer than the record may rest on a restricted warning).
    issuer = AgencyContact("issuer", "Issuer", "0300 555 0101")
    warning = WarningRow(_values(WarningRow, id="w", household_id="h"), shared_with=None)
    older, newer, alone = (
        IncidentRow(_values(IncidentRow, id=f"i{day}", household_id="h", agency_id="issuer",
                            occurred_on=date(2026, 11, day)))
        for day in (1, 2, 3)
    )  # fmt: skip
    record = record_of([
        (warning, issuer, None, None),
        (None, None, alone, None),
        (None, None, newer, warning.id),
        (None, None, newer, "a-warning-not-read"),
        (None, None, older, warning.id),
    ])  # fmt: skip
    assert record.warnings == [warning]
    assert record.issuers == {"issuer": issuer}
    assert record.incidents == [alone, older]
    assert warning.incidents == [older]


def test_a_row_reads_the_columns_its_model_declares_and_opens_none_until_asked() -> None:
    # The id first, the plain columns, the sealed ones, and the record's key columns last.
    assert IncidentRow.stored == (
        "id", "household_id", "agency_id", "occurred_on", "categories", "police_reported",
        "recorded_at", "summary_sealed", "description_sealed", "crime_reference_sealed",
        "key_version", "wrapped_key",
    )  # fmt: skip
    assert "shared_with" not in WarningRow.stored and "incidents" not in WarningRow.stored
    row = IncidentRow(_values(IncidentRow, id="i", categories="verbal_abuse harassment"))
    assert row.category_list == ["verbal_abuse", "harassment"]
    assert "_cipher" not in vars(row)


def test_a_row_type_takes_a_personal_field_under_its_own_name_only() -> None:
    # Python 3.11 wraps an error raised in __set_name__ in a RuntimeError; 3.12 does not.
    with pytest.raises((TypeError, RuntimeError)) as raised:

        class Misnamed(IncidentRow):
            narrative = Incident.summary

    error = raised.value.__cause__ or raised.value
    assert isinstance(error, TypeError) and "cannot be renamed" in str(error)
    assert Incident.summary.column == "summary_sealed"

"""A household's record read as plain rows (service.models.encrypted.SealedRow): the row types,
opening their personal fields, and assembling the record (service.warnings.record_of)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from flask import Flask

from service.crypto import DecryptionError
from service.database import db
from service.models.agency import AgencyRow
from service.models.encrypted import SealedRow
from service.models.incident import Incident, IncidentRow
from service.models.warning import WarningMarker, WarningRow
from service.unit_of_work import unit_of_work
from service.warnings import household_record, record_of
from tests.factories import create_agency, create_household


def _values(row_type: type[SealedRow], **columns: Any) -> list[Any]:
    return [columns.get(name) for name in row_type.stored]


def test_an_incident_resting_on_a_warning_not_read_is_left_out() -> None:
    # One statement reads one snapshot, so this cannot come from the database today; the guard
    # stays (an incident of a change newer than the record may rest on a restricted warning).
    issuer = AgencyRow(_values(AgencyRow, id="issuer", name="Issuer"))
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


def test_a_row_type_names_its_model_and_reads_only_its_columns() -> None:
    with pytest.raises((TypeError, RuntimeError), match="must name the model"):

        class Unnamed(IncidentRow):
            pass

    with pytest.raises((TypeError, RuntimeError), match=r"not columns of Incident: \['narative'\]"):

        class Misspelt(SealedRow):
            model = Incident
            narative: str


def test_the_record_opens_what_the_models_sealed_and_each_incident_is_one_object(
    app: Flask,
) -> None:
    issuer = create_agency(app, duty_contact="Duty desk 0300 555 0199")
    household_id = create_household(app, created_by=issuer, involved=(issuer,))
    with app.app_context(), unit_of_work():
        incident = Incident(
            household_id=household_id, agency_id=issuer, occurred_on=date(2026, 11, 2),
            categories="verbal_abuse", police_reported=True, summary="Shouted at the door",
            description="Told the visitor not to come back", crime_reference="KE-26-000001",
        )  # fmt: skip
        for _ in range(2):  # two warnings rest on the one incident
            warning = WarningMarker(
                household_id=household_id, issuing_agency_id=issuer, risk_level="medium",
                categories="verbal_abuse", children_in_household=False, subject_informed=True,
                review_by=date(2027, 5, 1), status_reason=None,
            )  # fmt: skip
            warning.incidents = [incident]
            db.session.add(warning)
    with app.app_context():
        record = household_record(household_id)
        assert [i.summary for i in record.incidents] == ["Shouted at the door"]
        read = record.incidents[0]
        assert (read.description, read.crime_reference) == (
            "Told the visitor not to come back", "KE-26-000001",
        )  # fmt: skip
        assert [w.incidents for w in record.warnings] == [[read], [read]]
        assert all(w.incidents[0] is read for w in record.warnings)
        assert record.issuers[issuer].duty_contact == "Duty desk 0300 555 0199"
        # Its key and ciphertext are bound to the incident's id: under another id, neither opens.
        values = [read.__dict__[name] for name in IncidentRow.stored]
        moved = IncidentRow([record.warnings[0].id, *values[1:]])
        with pytest.raises(DecryptionError):
            _ = moved.summary

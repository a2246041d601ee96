"""Assembling a household's record from its statement's rows (service.warnings.record_of)."""

from __future__ import annotations

from datetime import date

from flask import Flask

from service.models.agency import Agency
from service.models.incident import Incident
from service.models.warning import WarningMarker
from service.warnings import record_of


def test_an_incident_resting_on_a_warning_not_read_is_left_out(app: Flask) -> None:
    # One statement reads one snapshot, so this cannot come from the database today; the guard
    # stays (an incident of a change newer than the record may rest on a restricted warning).
    with app.app_context():
        issuer = Agency(id="issuer", name="Issuer")
        warning = WarningMarker(household_id="h", issuing_agency_id="issuer")
        older, newer, alone = (
            Incident(household_id="h", agency_id="issuer", occurred_on=date(2026, 11, day))
            for day in (1, 2, 3)
        )
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

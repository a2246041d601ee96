"""Reads that take several statements, against a change committed between two of them.

On PostgreSQL (read committed) each statement sees what committed before it; SQLite's
transactions run one at a time, so these races are PostgreSQL's alone.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from service import warnings
from service.database import db
from service.incidents import IncidentReport
from service.models.household import Household
from service.unit_of_work import unit_of_work
from tests.conftest import ON_POSTGRES
from tests.factories import bearer, create_agency, create_client, create_household, get_token

TODAY = date.today()
SECRET = "Cornered on the landing by the brother"


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite runs one transaction at a time")
def test_a_restricted_warning_published_mid_read_shows_nothing_of_itself(
    app: Flask, client: FlaskClient
) -> None:
    issuer, reader = create_agency(app, slug="issuer"), create_agency(app, slug="reader")
    household_id = create_household(app, created_by=issuer, involved=(issuer, reader))
    headers = bearer(get_token(client, create_client(app, agency_id=reader)))

    published: list[bool] = []

    def publish_between_the_reads(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Just before the reader's request reads the household's warnings and incidents (one
        # statement since the briefing's reads were merged; the incident list's too), another
        # agency commits a warning restricted from the reader, with a new incident.
        if published or "warning_incident" not in statement or "LEFT OUTER JOIN" not in statement:
            return
        published.append(True)
        with app.app_context(), unit_of_work():
            draft = warnings.WarningDraft(
                categories=("assault",), risk_level="high", children_in_household=False,
                handling="restricted", shared_with=(),
                subject_informed=warnings.SubjectInformed(True, informed_on=TODAY),
            )  # fmt: skip
            report = IncidentReport(occurred_on=TODAY - timedelta(days=1), categories=(),
                                    summary=SECRET, police_reported=False)  # fmt: skip
            household = db.session.get(Household, household_id)
            assert household is not None
            warnings.publish_warning(household, issuer, draft, warnings.Evidence((report,)), TODAY)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", publish_between_the_reads)
    try:
        response = client.get(f"/api/v1/incidents?household_id={household_id}", headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", publish_between_the_reads)
    assert published, "the race was not staged"
    assert response.status_code == 200, response.get_json()
    assert SECRET not in response.get_data(as_text=True)
    # Read again, after the change: the incident is known to rest on a warning the reader may
    # not read, and stays withheld.
    again = client.get(f"/api/v1/incidents?household_id={household_id}", headers=headers)
    assert again.status_code == 200 and SECRET not in again.get_data(as_text=True)

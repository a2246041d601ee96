"""Invariant 1: no personal data in plaintext at rest, and sealed data fails closed."""

from __future__ import annotations

import re
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect, select, update
from sqlalchemy.engine import make_url

from service import households, involvements, key_rotation, warnings
from service.crypto import DecryptionError
from service.database import db, utcnow
from service.incidents import IncidentReport
from service.models import Agency, Household, Involvement, Person, WarningMarker, WarningVersion
from service.models.encrypted import Personal, new_id
from service.models.notification import Acknowledgement, Notification, Webhook
from service.notifications import acknowledge
from service.unit_of_work import unit_of_work
from tests.conftest import ON_POSTGRES
from tests.factories import bearer, create_agency, create_client, get_token

PLANTED = {
    "given_name": "Zebedee",
    "family_name": "Quillfeather-Okonkwo",
    "address_line1": "17 Marzipan Crescent",
    "address_line2": "Flat 9b Larkspur House",
    "town": "Snodland",
    "postcode": "ME6 5QX",
    "uprn": "200004567123",
    "relationship": "stepgrandfather",
    "nhs_number": "943 476 5919",
    "case_reference": "CSC-77-QZ-40913",
    "lead_practitioner": "Philippa Mandragora",
    "contact_route": "07700 900461",
    "duty_contact": "Duty desk 01632 960713",
    "lead_contact": "07700 900987",
    "ended_reason": "Family relocated to Tewkesbury",
    "summary": "Waved a cutlass near the Tamagotchi shed",
    "description": "Practitioner Vespertine cornered in the scullery",
    "crime_reference": "KE-26-998877",
    "concern_given_name": "Barnabus",
    "concern_family_name": "Thistlewaite-Vondracek",
    "reason_withheld": "Disclosure endangers Persimmon siblings",
    "status_reason": "Superseded by Xanthippe review",
    "acknowledged_by": "Ottoline Fernsby-Quartermaine",
    "webhook_secret": "whsec_UGVyc2ltbW9uWmVwaHlyUXVpbGxmZWF0aGVyT2tvbmt3bw==",
}


def _plant_everything(app: Flask) -> None:
    agency = create_agency(app, duty_contact=PLANTED["duty_contact"])
    with app.app_context():
        household = households.register_household(
            agency,
            uprn=PLANTED["uprn"],
            address_line1=PLANTED["address_line1"],
            address_line2=PLANTED["address_line2"],
            town=PLANTED["town"],
            postcode=PLANTED["postcode"],
        )
        households.add_member(
            household,
            role="adult",
            given_name=PLANTED["given_name"],
            family_name=PLANTED["family_name"],
            date_of_birth=date(1961, 2, 3),
            nhs_number=PLANTED["nhs_number"],
            relationship=PLANTED["relationship"],
        )
        involvements.register_involvement(
            household,
            agency,
            case_reference=PLANTED["case_reference"],
            lead_practitioner=PLANTED["lead_practitioner"],
            lead_contact=PLANTED["lead_contact"],
            contact_route=PLANTED["contact_route"],
        )
        db.session.commit()
    _plant_a_warning(app, agency)


def _plant_a_warning(app: Flask, agency: str) -> None:
    """A warning with every personal field, changed so its versions hold them too."""
    partner = create_agency(app)
    with app.app_context(), unit_of_work():
        household = db.session.scalars(select(Household)).one()
        ended = involvements.register_involvement(household, partner, case_reference="P-1")
        db.session.flush()
        involvements.end_involvement(ended.id, partner, PLANTED["ended_reason"])
        draft = warnings.WarningDraft(
            categories=("weapons",), risk_level="high", children_in_household=False,
            persons_of_concern=({"given_name": PLANTED["concern_given_name"],
                                 "family_name": PLANTED["concern_family_name"]},),
            subject_informed=warnings.SubjectInformed(
                False, reason_withheld=PLANTED["reason_withheld"], recheck_on=date(2027, 1, 1)
            ),
        )  # fmt: skip
        report = IncidentReport(
            occurred_on=date(2026, 11, 1), categories=(), summary=PLANTED["summary"],
            description=PLANTED["description"], police_reported=True,
            crime_reference=PLANTED["crime_reference"],
        )  # fmt: skip
        warning = warnings.publish_warning(
            household, agency, draft, warnings.Evidence((report,)), date(2026, 11, 20)
        )
        warnings.close_warning(warning, agency, PLANTED["status_reason"])
        _plant_notifications(agency, warning)


def _plant_notifications(agency: str, warning: Any) -> None:
    """An acknowledged notification, and a webhook endpoint with its signing secret."""
    db.session.flush()  # the warning first: the notification refers to it
    told = Notification(
        id=new_id(), agency_id=agency, type="warning.published",
        household_id=warning.household_id, warning_id=warning.id, created_at=utcnow(),
    )  # fmt: skip
    db.session.add(told)
    db.session.flush()
    acknowledge(told.id, agency, PLANTED["acknowledged_by"])
    db.session.add(Webhook(agency_id=agency, url="https://receiver.example.org/alerts",
                           secret=PLANTED["webhook_secret"]))  # fmt: skip


def _variants(value: str) -> set[bytes]:
    """The planted value as it could appear: any case, any spacing, hex as in a bytea dump."""
    squashed = re.sub(r"[\s-]+", "", value.lower())
    return {squashed.encode(), squashed.encode().hex().encode()}


def _leaks(raw: bytes) -> list[str]:
    haystack = re.sub(rb"[\s-]+", b"", raw.lower())
    return [name for name, value in PLANTED.items() if any(v in haystack for v in _variants(value))]


def test_planted_values_round_trip(app: Flask) -> None:
    _plant_everything(app)
    with app.app_context():
        person = db.session.scalars(select(Person)).one()
        household = db.session.scalars(select(Household)).one()
        involvement, ended = db.session.scalars(
            select(Involvement).order_by(Involvement.ended_at.is_not(None))
        ).all()
        assert (person.given_name, person.family_name) == ("Zebedee", "Quillfeather-Okonkwo")
        assert person.nhs_number == "9434765919"
        assert person.date_of_birth == "1961-02-03"
        assert household.postcode == "ME6 5QX" and household.town == "Snodland"
        assert involvement.case_reference == PLANTED["case_reference"]
        assert involvement.lead_contact == PLANTED["lead_contact"]
        assert ended.ended_reason == PLANTED["ended_reason"]
        webhook = db.session.scalars(select(Webhook)).one()
        assert webhook.signing_secrets(utcnow()) == [PLANTED["webhook_secret"]]
        ack = db.session.scalars(select(Acknowledgement)).one()
        assert ack.practitioner == PLANTED["acknowledged_by"]
        warning = db.session.scalars(select(WarningMarker)).one()
        (incident,) = warning.incidents
        assert (incident.summary, incident.description, incident.crime_reference) == (
            PLANTED["summary"], PLANTED["description"], PLANTED["crime_reference"])  # fmt: skip
        assert PLANTED["concern_family_name"] in (warning.persons_of_concern or "")
        assert (warning.reason_withheld, warning.status_reason) == (
            PLANTED["reason_withheld"], PLANTED["status_reason"])  # fmt: skip
        versions = select(WarningVersion).order_by(WarningVersion.version)
        snapshots = [v.snapshot for v in db.session.scalars(versions)]
        assert len(snapshots) == 2 and PLANTED["status_reason"] in snapshots[-1]


@pytest.mark.skipif(ON_POSTGRES, reason="scans the SQLite file; the PostgreSQL run dumps instead")
def test_sqlite_file_and_wal_hold_no_plaintext(app: Flask) -> None:
    _plant_everything(app)
    path = Path(make_url(app.config["DATABASE_URL"]).database or "")
    wal = Path(f"{path}-wal")
    raw = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert wal.exists(), "expected the WAL to hold the recent writes too"
    assert _leaks(raw) == []
    # The scan itself must be able to see a planted value (it is not blind).
    assert _leaks(raw + b"... QUILLFEATHER  okonkwo ...") == ["family_name"]


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
def test_pg_dump_holds_no_plaintext(app: Flask) -> None:
    _plant_everything(app)
    url = make_url(app.config["DATABASE_URL"])
    dump = subprocess.run(
        [
            "pg_dump",
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            url.database or "",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert b"COPY public.person" in dump
    assert _leaks(dump) == []


def test_blind_index_finds_equivalent_inputs(app: Flask) -> None:
    _plant_everything(app)
    with app.app_context():
        assert len(households.find_households_by_address("me6 5qx", "17  marzipan crescent")) == 1
        assert len(households.find_households_by_uprn(" 200004567123 ")) == 1
        assert households.find_households_by_address("ME6 5QY", "17 Marzipan Crescent") == []
        found = households.find_people_by_name_and_birth_date(
            "QUILLFEATHER okonkwo", date(1961, 2, 3)
        )
        assert len(found) == 1
        assert len(households.find_people_by_nhs_number("943-476-5919")) == 1


def test_invalid_nhs_number_and_postcode_are_refused(app: Flask) -> None:
    agency = create_agency(app)
    with app.app_context():
        with pytest.raises(households.InvalidInput) as error:
            households.register_household(agency, postcode="NOT A CODE", address_line1="1 High St")
        assert set(error.value.errors) == {"postcode"}
        household = households.register_household(agency, uprn="1")
        with pytest.raises(households.InvalidInput) as error:
            households.add_member(
                household, role="adult", given_name="A", family_name="B", nhs_number="943 476 5918"
            )
        assert set(error.value.errors) == {"nhs_number"}


def test_ciphertext_moved_to_another_row_fails(app: Flask) -> None:
    agency = create_agency(app)
    with app.app_context():
        household = households.register_household(agency, uprn="100")
        a = households.add_member(household, role="adult", given_name="Ann", family_name="Alpha")
        b = households.add_member(household, role="child", given_name="Bo", family_name="Beta")
        db.session.commit()
        a_id, b_id = a.id, b.id
        db.session.execute(
            update(Person).where(Person.id == b_id).values(family_name_sealed=a.family_name_sealed)
        )
        db.session.commit()
        db.session.expunge_all()
        with pytest.raises(DecryptionError) as error:
            _ = db.session.get(Person, b_id).family_name  # type: ignore[union-attr]
        assert b_id in str(error.value) and "Alpha" not in str(error.value)
        assert db.session.get(Person, a_id).family_name == "Alpha"  # type: ignore[union-attr]


def test_tampered_record_is_a_generic_500(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    token = get_token(client, creds)
    with app.app_context():
        sealed = bytearray(db.session.get(Agency, creds.agency_id).duty_contact_sealed)  # type: ignore[union-attr]
        sealed[-1] ^= 0x01
        db.session.execute(
            update(Agency)
            .where(Agency.id == creds.agency_id)
            .values(duty_contact_sealed=bytes(sealed))
        )
        db.session.commit()
    response = client.get("/api/v1/agencies", headers=bearer(token))
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "duty" not in response.get_data(as_text=True)


def test_personal_fields_have_only_sealed_columns(app: Flask) -> None:
    with app.app_context():
        inspector = inspect(db.engine)
        for model in key_rotation.encrypted_models():
            columns = {column["name"] for column in inspector.get_columns(model.__tablename__)}
            personal = [name for name, value in vars(model).items() if isinstance(value, Personal)]
            assert personal, model
            for name in personal:
                assert name not in columns and f"{name}_sealed" in columns

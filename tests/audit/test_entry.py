"""The pending entry: exactly the chained fields, and how a status becomes an outcome."""

from __future__ import annotations

import dataclasses

import pytest

from service.audit.chain import CHAINED_FIELDS
from service.audit.entry import ASSIGNED_ON_APPEND, PendingEntry, outcome_of
from service.models.audit import AuditEntry
from tests.audit.test_properties import expected_outcome


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "allowed"), (201, "allowed"), (204, "allowed"), (301, "failed"), (302, "failed"),
     (304, "failed"), (400, "failed"), (401, "denied"), (403, "denied"), (404, "denied"),
     (405, "failed"), (412, "failed"), (413, "failed"), (500, "failed"), (503, "failed")],
)  # fmt: skip
def test_outcome_of_a_status(status: int, outcome: str) -> None:
    assert outcome_of(status) == outcome


def test_the_property_tests_oracle_agrees_with_the_code_for_every_status() -> None:
    assert [expected_outcome(s) for s in range(100, 600)] == [
        outcome_of(s) for s in range(100, 600)
    ]


def test_pending_entry_and_stored_entry_carry_exactly_the_chained_fields() -> None:
    recorded = {f.name for f in dataclasses.fields(PendingEntry)}
    assert recorded | set(ASSIGNED_ON_APPEND) == set(CHAINED_FIELDS)
    assert set(CHAINED_FIELDS) <= set(AuditEntry.__table__.columns.keys())

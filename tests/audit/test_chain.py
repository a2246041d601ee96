"""Hash chain: canonical form, verification and tamper detection, with real SHA-256."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from service.audit.chain import (
    CHAINED_FIELDS,
    GENESIS_HASH,
    ROW_FIELDS,
    canonical_bytes,
    canonical_json,
    format_timestamp,
    link_hash,
    verify_chain,
)
from service.audit.checkpoint import Checkpoint, sign_checkpoint
from tests.audit.helpers import generate_private_key

Row = tuple[Any, ...]
_KEY = generate_private_key()


def make_fields(seq: int = 1, **overrides: Any) -> dict[str, Any]:
    """Return realistic chained fields for one entry, overridable by keyword."""
    moment = datetime(2026, 11, 23, 10, 57, 21, 123456, tzinfo=UTC) + timedelta(seconds=seq)
    fields: dict[str, Any] = {
        "seq": seq,
        "occurred_at": format_timestamp(moment),
        "action": "warning:read",
        "outcome": "allowed",
        "status": 200,
        "agency_id": "agency-a",
        "client_id": "client-1",
        "practitioner": "sw-0042",
        "purpose": "pre_visit",
        "request_id": f"req-{seq}",
        "source_address": "10.0.0.7",
        "targets": {"household": [f"hh-{seq}"], "warning": [f"w-{seq}"]},
        "returned": {"warning": [f"w-{seq}"]},
        "kind": "entry",
    }
    fields.update(overrides)
    return fields


def chain(fields_list: list[dict[str, Any]], prev: bytes = GENESIS_HASH) -> list[Row]:
    """Link field dicts into rows shaped (CHAINED_FIELDS values..., prev_hash, hash)."""
    rows = []
    for fields in fields_list:
        digest = link_hash(prev, fields)
        rows.append((*(fields[name] for name in CHAINED_FIELDS), prev, digest))
        prev = digest
    return rows


def build_chain(count: int = 5, start_seq: int = 1, prev: bytes = GENESIS_HASH) -> list[Row]:
    """Return a valid chain of `count` rows starting at start_seq."""
    return chain([make_fields(seq) for seq in range(start_seq, start_seq + count)], prev)


def fields_of(row: Row) -> dict[str, Any]:
    """Return the chained fields of a row as a dict."""
    return dict(zip(CHAINED_FIELDS, row[: len(CHAINED_FIELDS)], strict=True))


def edit(row: Row, **changes: Any) -> Row:
    """Return row with some fields changed but its stored hashes left alone."""
    values = dict(zip(ROW_FIELDS, row, strict=True)) | changes
    return tuple(values[name] for name in ROW_FIELDS)


@dataclass
class StoredEntry:
    """A ChainedEntry as an ORM model might look, with hex hashes."""

    seq: int
    prev_hash: str
    hash: str
    fields: dict[str, Any]

    def chained_fields(self) -> Mapping[str, Any]:
        """Return the chained fields."""
        return self.fields


def expect(report: Any, problem: str | None, seq: int | None) -> None:
    """Assert the report's problem and first bad seq."""
    assert (report.problem, report.first_bad_seq, report.ok) == (problem, seq, problem is None)


def test_intact_chain_verifies_with_count_and_head() -> None:
    rows = build_chain(5)
    report = verify_chain(rows)
    expect(report, None, None)
    assert (report.checked, report.head_seq, report.head_hash) == (5, 5, rows[-1][-1].hex())
    assert report.detail is None


@pytest.mark.parametrize("shape", ["objects", "dicts", "lists"])
def test_other_entry_shapes_verify(shape: str) -> None:
    rows = build_chain(4)
    entries: list[Any]
    if shape == "objects":
        entries = [StoredEntry(r[10], r[14].hex(), r[15].hex(), fields_of(r)) for r in rows]
    elif shape == "dicts":
        entries = [{"id": 99, **dict(zip(ROW_FIELDS, r, strict=True))} for r in rows]
    else:
        entries = [list(r) for r in rows]
    report = verify_chain(iter(entries))
    assert report.ok and report.checked == 4 and report.head_hash == rows[-1][-1].hex()


def test_empty_chain_is_ok_with_no_head() -> None:
    report = verify_chain([])
    assert (report.ok, report.checked, report.head_seq, report.head_hash) == (True, 0, None, None)


def test_edited_field_is_altered_at_that_seq() -> None:
    rows = build_chain(6)
    rows[3] = edit(rows[3], practitioner="sw-9999")
    report = verify_chain(rows)
    expect(report, "altered", 4)
    assert (report.checked, report.head_seq, report.head_hash) == (3, 3, rows[2][-1].hex())


@pytest.mark.parametrize("column", ["hash", "prev_hash"])
def test_edited_stored_hash_is_altered(column: str) -> None:
    rows = build_chain(5)
    rows[2] = edit(rows[2], **{column: hashlib.sha256(b"forged").digest()})
    expect(verify_chain(rows), "altered", 3)


def test_malformed_stored_values_are_altered_not_errors() -> None:
    rows = build_chain(3)
    rows[1] = edit(rows[1], status="200", hash="not hex")
    report = verify_chain(rows)
    expect(report, "altered", 2)
    assert report.detail and "canonicalised" in report.detail


def test_deleted_entry_is_missing_at_its_seq() -> None:
    rows = build_chain(6)
    expect(verify_chain(rows[:2] + rows[3:]), "missing", 3)
    expect(verify_chain(rows[1:]), "missing", 1)


@pytest.mark.parametrize(("i", "j"), [(2, 3), (1, 4)])
def test_swapped_entries_are_out_of_order_at_first_swapped_position(i: int, j: int) -> None:
    rows = build_chain(6)
    rows[i], rows[j] = rows[j], rows[i]
    report = verify_chain(rows)
    # first_bad_seq is the seq found at the first wrong position (the entry stored there).
    expect(report, "out_of_order", j + 1)
    assert report.checked == i and f"where seq {i + 1} was expected" in (report.detail or "")


def test_duplicated_entry_is_out_of_order() -> None:
    rows = build_chain(4)
    expect(verify_chain(rows[:3] + rows[2:]), "out_of_order", 3)


def test_edited_seq_is_reported_at_the_seq_found() -> None:
    rows = build_chain(5)
    expect(verify_chain([*rows[:2], edit(rows[2], seq=40), *rows[3:]]), "out_of_order", 40)
    expect(verify_chain([*rows[:4], edit(rows[4], seq=40)]), "missing", 5)


def test_first_problem_wins() -> None:
    rows = build_chain(8)
    rows[6] = edit(rows[6], action="warning:delete")
    del rows[2]
    expect(verify_chain(rows), "missing", 3)


def checkpoint_of(rows: list[Row]) -> Checkpoint:
    """Sign a checkpoint at the last row of rows."""
    return sign_checkpoint(_KEY, rows[-1][10], rows[-1][-1])


def test_deleted_tail_is_only_detected_with_a_checkpoint() -> None:
    rows = build_chain(8)
    checkpoint = checkpoint_of(rows[:6])
    assert verify_chain(rows[:4]).ok
    report = verify_chain(rows[:4], checkpoint=checkpoint)
    expect(report, "truncated", 6)
    assert (report.checked, report.head_seq) == (4, 4)
    expect(verify_chain([], checkpoint=checkpoint), "truncated", 6)


def test_checkpoint_matching_intact_chain_is_ok() -> None:
    rows = build_chain(8)
    assert verify_chain(rows, checkpoint=checkpoint_of(rows[:5])).ok
    assert verify_chain(rows, checkpoint=checkpoint_of(rows)).ok


def test_consistent_rewrite_is_a_checkpoint_mismatch() -> None:
    original = [make_fields(seq) for seq in range(1, 9)]
    checkpoint = checkpoint_of(chain(original)[:6])
    rewritten = chain([*original[:2], make_fields(3, outcome="denied"), *original[3:]])
    assert verify_chain(rewritten).ok  # internally consistent: only the checkpoint catches it
    report = verify_chain(rewritten, checkpoint=checkpoint)
    expect(report, "checkpoint_mismatch", 6)
    assert report.checked == 5


def test_window_after_archived_prefix() -> None:
    rows = build_chain(10)
    archive = make_fields(11, kind="archive", action="audit:archive", targets={"seq": ["1", "6"]})
    rows += chain([archive], rows[-1][-1])
    window = rows[6:]
    report = verify_chain(window, start_prev_hash=rows[5][-1], start_seq=7)
    assert (report.ok, report.checked, report.head_seq) == (True, 5, 11)
    expect(verify_chain(window, start_prev_hash=bytes(32), start_seq=7), "altered", 7)
    expect(verify_chain(window, start_prev_hash=rows[5][-1], start_seq=6), "missing", 6)


def test_window_checks_a_checkpoint_just_before_it_and_refuses_older_ones() -> None:
    rows = build_chain(10)
    window = {"start_prev_hash": rows[5][-1], "start_seq": 7}
    assert verify_chain(rows[6:], checkpoint=checkpoint_of(rows[:6]), **window).ok
    rewritten = build_chain(6, prev=hashlib.sha256(b"other").digest())
    expect(
        verify_chain(rows[6:], checkpoint=checkpoint_of(rewritten), **window),
        "checkpoint_mismatch",
        6,
    )
    with pytest.raises(ValueError, match="precedes"):
        verify_chain(rows[6:], checkpoint=checkpoint_of(rows[:3]), **window)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        verify_chain([], start_prev_hash=b"short")
    with pytest.raises(ValueError, match="rows need 16"):
        verify_chain([build_chain(1)[0][:-1]])


def test_report_to_json() -> None:
    rows = build_chain(3)
    rows[1] = edit(rows[1], status=500)
    doc = verify_chain(rows).to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert doc | {"detail": None} == {
        "ok": False,
        "checked": 1,
        "head_seq": 1,
        "head_hash": rows[0][-1].hex(),
        "first_bad_seq": 2,
        "problem": "altered",
        "detail": None,
    }


def test_canonical_bytes_golden_vector() -> None:
    fields = make_fields(1, practitioner=None, returned={}, targets={"warning": ["b", "a"]})
    expected = (
        b'{"action":"warning:read","agency_id":"agency-a","client_id":"client-1","kind":"entry",'
        b'"occurred_at":"2026-11-23T10:57:22.123456Z","outcome":"allowed","practitioner":null,'
        b'"purpose":"pre_visit","request_id":"req-1","returned":{},"seq":1,'
        b'"source_address":"10.0.0.7","status":200,"targets":{"warning":["b","a"]}}'
    )
    assert canonical_bytes(fields) == expected
    assert link_hash(GENESIS_HASH, fields) == hashlib.sha256(bytes(32) + expected).digest()


def test_canonical_bytes_ignore_key_order_and_match_reference() -> None:
    fields = make_fields(7, targets={"warning": ["w2", "w1"], "household": ["h"]})
    shuffled = dict(reversed(list(fields.items())))
    shuffled["targets"] = dict(reversed(list(fields["targets"].items())))
    assert canonical_bytes(shuffled) == canonical_bytes(fields) == canonical_json(fields)
    assert b'"targets":{"household":["h"],"warning":["w2","w1"]}' in canonical_bytes(fields)


def test_missing_or_extra_keys_are_rejected() -> None:
    fields = make_fields()
    del fields["purpose"]
    with pytest.raises(ValueError, match="missing \\['purpose'\\]"):
        canonical_bytes(fields)
    with pytest.raises(ValueError, match="extra \\['colour'\\]"):
        canonical_bytes(make_fields(colour="red"))


@pytest.mark.parametrize(
    "change",
    [{"status": True}, {"seq": 1.0}, {"action": None}, {"agency_id": 5}, {"targets": []},
     {"returned": {"warning": "w-1"}}, {"returned": {"warning": [1]}}, {"targets": {1: ["a"]}}],
)  # fmt: skip
def test_wrong_value_types_are_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="malformed"):
        canonical_bytes(make_fields(**change))


def test_non_ascii_text_is_escaped() -> None:
    data = canonical_bytes(make_fields(practitioner="Zoë 🦊\n\x7f", targets={"é": ["/"]}))
    assert data.isascii()
    assert b'"practitioner":"Zo\\u00eb \\ud83e\\udd8a\\n\\u007f"' in data
    assert b'"targets":{"\\u00e9":["/"]}' in data
    odd = make_fields(purpose='\ud800\x00"\\', targets={"\U0001f98a": ["\u2028"]})
    assert canonical_bytes(odd) == canonical_json(odd)


def test_format_timestamp_is_utc_with_microseconds() -> None:
    local = datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(local) == "2026-11-23T10:00:00.000000Z"
    with pytest.raises(ValueError, match="aware"):
        format_timestamp(datetime(2026, 11, 23))


ids = st.lists(st.text(max_size=8), max_size=3)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    name: st.text(max_size=12) for name in ("action", "kind", "occurred_at", "outcome")
} | {
    name: st.none() | st.text(max_size=12)
    for name in ("agency_id", "client_id", "practitioner", "purpose", "request_id")
} | {
    "source_address": st.none() | st.text(max_size=12),
    "status": st.integers(-(2**70), 2**70),
    "targets": st.dictionaries(st.text(max_size=6), ids, max_size=3),
    "returned": st.dictionaries(st.text(max_size=6), ids, max_size=3),
}  # fmt: skip


@st.composite
def entry_fields(draw: st.DrawFn, seq: int) -> dict[str, Any]:
    """Draw a valid field dict for the given seq."""
    return {"seq": seq} | {name: draw(values) for name, values in FIELD_VALUES.items()}


@given(st.data(), st.integers(1, 12))
def test_any_single_field_edit_is_reported_at_its_seq(data: st.DataObject, count: int) -> None:
    fields = [data.draw(entry_fields(seq)) for seq in range(1, count + 1)]
    rows = chain(fields)
    assert all(canonical_bytes(f) == canonical_json(f) for f in fields)  # fast path == reference
    assert verify_chain(rows).ok
    position = data.draw(st.integers(0, count - 1))
    name = data.draw(st.sampled_from(sorted(FIELD_VALUES)))
    value = data.draw(FIELD_VALUES[name])
    assume(canonical_json(value) != canonical_json(fields[position][name]))
    rows[position] = edit(rows[position], **{name: value})
    report = verify_chain(rows)
    expect(report, "altered", position + 1)
    assert report.checked == position

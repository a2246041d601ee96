"""Invariant 3: the database refuses changes; a rogue administrator's changes are named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from service.audit.chain import link_hash
from service.audit.checkpoint import Checkpoint
from service.audit.verification import create_checkpoint, verify_log
from service.cli import main
from service.database import db
from service.keys import active_keys
from service.models.audit import AuditEntry
from tests.conftest import ON_POSTGRES
from tests.factories import bearer, create_client, get_token


def rogue(app: Flask, *statements: str) -> None:
    """Run SQL as a database owner who switched the protections off first."""
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if ON_POSTGRES:
                cursor.execute("SET session_replication_role = replica")
            else:
                cursor.execute("PRAGMA foreign_keys=OFF")
                for trigger in ("audit_entry_no_update", "audit_entry_no_delete",
                                "audit_checkpoint_no_update", "audit_head_forward_only",
                                "audit_head_no_delete"):  # fmt: skip
                    cursor.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            for statement in statements:
                cursor.execute(statement)
            raw.commit()
        finally:
            raw.close()


def report(app: Flask, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    with app.app_context():
        return verify_log(checkpoint).to_json()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entry SET practitioner = 'x'",
        "DELETE FROM audit_entry",
        "UPDATE audit_ref SET ref_id = 'x'",
        "DELETE FROM audit_ref",
    ],
)
def test_database_refuses_update_and_delete(six_entries: Flask, statement: str) -> None:
    with six_entries.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text(statement))
        db.session.rollback()
    assert report(six_entries)["ok"] is True


@pytest.mark.skipif(not ON_POSTGRES, reason="TRUNCATE is PostgreSQL's")
def test_postgresql_refuses_truncate(six_entries: Flask) -> None:
    with six_entries.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("TRUNCATE audit_entry CASCADE"))
        db.session.rollback()


def test_intact_log_verifies(six_entries: Flask) -> None:
    result = report(six_entries)
    assert (result["ok"], result["checked"], result["head_seq"]) == (True, 6, 6)


def test_edited_entry_is_named(six_entries: Flask) -> None:
    rogue(six_entries, "UPDATE audit_entry SET practitioner = 'someone-else' WHERE seq = 3")
    result = report(six_entries)
    assert (result["ok"], result["problem"], result["first_bad_seq"]) == (False, "altered", 3)


def test_deleted_entry_is_named(six_entries: Flask) -> None:
    rogue(six_entries, "DELETE FROM audit_entry WHERE seq = 4")
    result = report(six_entries)
    assert (result["problem"], result["first_bad_seq"]) == ("missing", 4)


def test_swapped_entries_are_named(six_entries: Flask) -> None:
    _swap_rows(six_entries, 3, 4)
    result = report(six_entries)
    assert result["problem"] == "out_of_order"
    assert result["first_bad_seq"] == 4  # seq 4 found where seq 3 belongs
    assert result["checked"] == 2


def _swap_rows(app: Flask, a: int, b: int) -> None:
    with app.app_context():
        rows = {
            row.seq: row.id
            for row in db.session.execute(select(AuditEntry.seq, AuditEntry.id).where(
                AuditEntry.seq.in_((a, b))))
        }  # fmt: skip
        db.session.rollback()
    # Move row ids so that seq b is stored before seq a: same rows, reordered storage.
    rogue(
        app,
        f"UPDATE audit_entry SET id = -1 WHERE id = {rows[a]}",
        f"UPDATE audit_entry SET id = {rows[a]} WHERE id = {rows[b]}",
        f"UPDATE audit_entry SET id = {rows[b]} WHERE id = -1",
    )


def test_truncated_tail_is_named_by_the_head(six_entries: Flask) -> None:
    rogue(six_entries, "DELETE FROM audit_entry WHERE seq >= 5")
    result = report(six_entries)
    assert (result["problem"], result["first_bad_seq"]) == ("truncated", 5)


def _cover_tracks(app: Flask, last_kept: int) -> None:
    """Delete the tail and point the head at the last kept entry, as a careful rogue would."""
    with app.app_context():
        kept = db.session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == last_kept))
        db.session.rollback()
    rogue(
        app,
        f"DELETE FROM audit_entry WHERE seq > {last_kept}",
        f"UPDATE audit_head SET seq = {last_kept}, hash = {_hex_literal(bytes(kept))}",
    )


def _hex_literal(raw: bytes) -> str:
    return f"'\\x{raw.hex()}'::bytea" if ON_POSTGRES else f"X'{raw.hex()}'"


def test_deleted_tail_is_caught_by_a_kept_checkpoint(six_entries: Flask) -> None:
    with six_entries.app_context():
        kept = create_checkpoint(active_keys().keyring.signing_key)
        db.session.commit()
    _cover_tracks(six_entries, 4)
    assert report(six_entries)["ok"] is True  # without a checkpoint, nothing shows
    result = report(six_entries, kept)
    assert (result["problem"], result["first_bad_seq"]) == ("truncated", kept.seq)


def test_rewritten_history_is_caught_by_a_kept_checkpoint(six_entries: Flask) -> None:
    with six_entries.app_context():
        kept = create_checkpoint(active_keys().keyring.signing_key)
        db.session.commit()
        entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        prev = bytes(entries[1].hash)
        updates = []
        for entry in entries[2:]:
            fields = entry.chained_fields()
            if entry.seq == 3:
                fields["practitioner"] = "nobody"
            digest = link_hash(prev, fields)
            updates.append((entry.seq, fields["practitioner"], prev, digest))
            prev = digest
        db.session.rollback()
    statements = [
        f"UPDATE audit_entry SET practitioner = '{p}', prev_hash = {_hex_literal(ph)}, "
        f"hash = {_hex_literal(h)} WHERE seq = {seq}"
        for seq, p, ph, h in updates
    ]
    rogue(six_entries, *statements, f"UPDATE audit_head SET hash = {_hex_literal(prev)}")
    assert report(six_entries)["ok"] is True  # a consistent rewrite passes on its own
    result = report(six_entries, kept)
    assert (result["problem"], result["first_bad_seq"]) == ("checkpoint_mismatch", 6)


def test_cli_checkpoint_and_verify_from_kept_file(
    six_entries: Flask, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTSHARE_DATABASE_URL", database_url)
    monkeypatch.setenv("ALERTSHARE_DATA_DIR", six_entries.config["DATA_DIR"])
    runner = CliRunner()
    kept = tmp_path / "checkpoint.json"
    result = runner.invoke(main, ["audit", "checkpoint", "--out", str(kept)])
    assert result.exit_code == 0, result.output
    assert json.loads(kept.read_text())["seq"] == 6
    verified = runner.invoke(main, ["audit", "verify", "--from-checkpoint", str(kept)])
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True
    _cover_tracks(six_entries, 3)
    verified = runner.invoke(main, ["audit", "verify", "--from-checkpoint", str(kept)])
    assert verified.exit_code == 1
    assert json.loads(verified.stdout)["problem"] == "truncated"
    forged = json.loads(kept.read_text()) | {"seq": 3}
    kept.write_text(json.dumps(forged))
    refused = runner.invoke(main, ["audit", "verify", "--from-checkpoint", str(kept)])
    assert refused.exit_code != 0 and "checkpoint refused" in refused.output


def test_checkpoints_are_append_only_and_a_forged_one_is_reported(
    six_entries: Flask, client: FlaskClient
) -> None:
    with six_entries.app_context():
        create_checkpoint(active_keys().keyring.signing_key)
        db.session.commit()
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("UPDATE audit_checkpoint SET seq = 1"))
        db.session.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("DELETE FROM audit_checkpoint"))
        db.session.rollback()
    with six_entries.app_context():
        kept = create_checkpoint(active_keys().keyring.signing_key)
        db.session.commit()
    # A forged newer checkpoint is reported, yet the chain is still held to the valid one.
    rogue(
        six_entries,
        "INSERT INTO audit_checkpoint (seq, hash, created_at, key_id, signature) VALUES "
        f"(999, '{'ab' * 32}', '{kept.created_at}', '{kept.key_id}', '{kept.signature}')",
    )
    token = get_token(client, create_client(six_entries))
    body = client.get("/api/v1/audit/verify", headers=bearer(token)).get_json()
    assert (body["ok"], body["problem"], body["checkpoint_seq"]) == (
        False,
        "checkpoint_invalid",
        kept.seq,
    )
    assert body["checked"] == 7  # six, plus the token request just made


def test_periodic_checkpoints_skip_an_unmoved_head(
    six_entries: Flask, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTSHARE_DATABASE_URL", database_url)
    monkeypatch.setenv("ALERTSHARE_DATA_DIR", six_entries.config["DATA_DIR"])
    out = tmp_path / "kept"
    args = ["audit", "checkpoints", "--every", "0.05", "--out-dir", str(out), "--count", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (kept,) = out.iterdir()
    assert kept.name == "checkpoint-000000000006.json"
    assert Checkpoint.from_json(kept.read_text()).seq == 6


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM audit_head",
        "UPDATE audit_head SET seq = 0",
        "UPDATE audit_head SET seq = seq + 5",
    ],
)
def test_the_chain_head_only_moves_forward(six_entries: Flask, statement: str) -> None:
    with six_entries.app_context():
        with pytest.raises(DBAPIError, match="only moves forward"):
            db.session.execute(text(statement))
        db.session.rollback()


def test_forged_entry_beyond_the_head_is_named(six_entries: Flask) -> None:
    rogue(
        six_entries,
        "INSERT INTO audit_entry (seq, occurred_at, kind, action, outcome, status, targets, "
        "returned, prev_hash, hash) SELECT 1000000, occurred_at, kind, action, outcome, status, "
        "targets, returned, prev_hash, hash FROM audit_entry WHERE seq = 6",
    )
    result = report(six_entries)
    assert (result["problem"], result["first_bad_seq"]) == ("missing", 7)


@pytest.mark.parametrize(
    ("statement", "first_bad_seq"),
    [("UPDATE audit_head SET seq = 3", 4), ("DELETE FROM audit_head", 1)],
)
def test_tampered_head_is_named(six_entries: Flask, statement: str, first_bad_seq: int) -> None:
    rogue(six_entries, statement)
    result = report(six_entries)
    assert (result["ok"], result["problem"]) == (False, "head_altered")
    assert result["first_bad_seq"] == first_bad_seq

"""Retention: an explicit, signed archival, never an ad-hoc delete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from service.audit.chain import verify_chain
from service.audit.checkpoint import public_key_from_private
from service.audit.verification import verify_log
from service.cli import main
from service.database import db
from service.keys import active_keys
from service.models.audit import AuditArchive, AuditEntry
from tests.audit.test_tamper_evidence import rogue


@pytest.fixture
def cli(six_entries: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ALERTSHARE_DATABASE_URL", database_url)
    monkeypatch.setenv("ALERTSHARE_DATA_DIR", six_entries.config["DATA_DIR"])
    return CliRunner()


def _verify(app: Flask) -> dict[str, object]:
    with app.app_context():
        public = public_key_from_private(active_keys().keyring.signing_key)
        return verify_log(public_key=public).to_json()


def test_archive_exports_signs_and_removes(
    six_entries: Flask, cli: CliRunner, tmp_path: Path
) -> None:
    export = tmp_path / "audit-1-4.jsonl"
    result = cli.invoke(main, ["audit", "archive", "--through", "4", "--out", str(export)])
    assert result.exit_code == 0, result.output
    lines = export.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4
    assert hashlib.sha256(b"".join(lines)).hexdigest() in result.output
    # The export verifies on its own, from the genesis hash, with the documented canonical form.
    assert verify_chain(json.loads(line) for line in lines).ok
    with six_entries.app_context():
        seqs = db.session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
        archive_entry = db.session.scalars(select(AuditEntry).where(AuditEntry.seq == 7)).one()
    assert seqs == [5, 6, 7]
    assert archive_entry.kind == "archive" and archive_entry.action == "audit:archive"
    report = _verify(six_entries)
    assert (report["ok"], report["checked"], report["head_seq"]) == (True, 3, 7)


def test_unarchived_entries_still_cannot_be_deleted(
    six_entries: Flask, cli: CliRunner, tmp_path: Path
) -> None:
    cli.invoke(main, ["audit", "archive", "--through", "2", "--out", str(tmp_path / "a.jsonl")])
    with six_entries.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("DELETE FROM audit_entry WHERE seq = 3"))
        db.session.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("DELETE FROM audit_archive"))
        db.session.rollback()


def test_forged_archive_record_is_named(six_entries: Flask) -> None:
    # Someone with INSERT rights writes an unsigned "archive" to get rows deleted.
    with six_entries.app_context():
        db.session.add(AuditArchive(through_seq=5, through_hash=bytes(32), export_sha256="0" * 64,
                                    entries=5, created_at="2026-01-01T00:00:00.000000Z",
                                    key_id="0" * 16, signature="A" * 86 + "=="))  # fmt: skip
        db.session.commit()
        db.session.execute(text("DELETE FROM audit_ref WHERE entry_seq <= 5"))
        db.session.execute(text("DELETE FROM audit_entry WHERE seq <= 5"))
        db.session.commit()
    report = _verify(six_entries)
    assert (report["ok"], report["problem"], report["first_bad_seq"]) == (
        False,
        "archive_invalid",
        5,
    )


def test_archive_refused_when_the_chain_is_broken(
    six_entries: Flask, cli: CliRunner, tmp_path: Path
) -> None:
    rogue(six_entries, "UPDATE audit_entry SET purpose = 'emergency' WHERE seq = 2")
    export = tmp_path / "refused.jsonl"
    result = cli.invoke(main, ["audit", "archive", "--through", "4", "--out", str(export)])
    assert result.exit_code != 0 and "does not verify" in result.output
    assert not export.exists()

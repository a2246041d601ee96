"""The key ring: loading rules, production refusals, and rotation with re-wrapping."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from service import ConfigError, create_app, households, involvements
from service.cli import main
from service.crypto import generate_keyring, keyring_to_json, save_keyring
from service.database import db
from service.models import Agency, Household, Involvement, Person
from tests.conftest import MakeApp
from tests.factories import create_agency

PRODUCTION = {
    "ENV": "production",
    "SECRET_KEY": "hN4w-Qe7Lr2Tz9Xk5Vb1Pc8Ym3Fs6Jd0Ga",
    "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
    "ISSUER": "https://alertshare.example.org",
}


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ALERTSHARE_DATABASE_URL", database_url)
    monkeypatch.setenv("ALERTSHARE_DATA_DIR", str(tmp_path))
    return CliRunner()


def _run(runner: CliRunner, *args: str, ok: bool = True) -> str:
    result = runner.invoke(main, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_keys_init_creates_a_private_file_once(cli: CliRunner, tmp_path: Path) -> None:
    _run(cli, "keys", "init")
    path = tmp_path / "keyring.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["development"] is False
    assert "refusing to overwrite" in _run(cli, "keys", "init", ok=False)


def test_world_readable_key_ring_is_refused(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "keyring.json"
    save_keyring(generate_keyring(), path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="0600"):
        create_app({"DATA_DIR": str(tmp_path), "DATABASE_URL": database_url})


def test_production_refuses_missing_or_development_key_ring(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key ring"):
        create_app({**PRODUCTION, "KEYRING": str(tmp_path / "absent.json")})
    dev = tmp_path / "dev.json"
    save_keyring(generate_keyring(development=True), dev)
    with pytest.raises(ConfigError, match="development one"):
        create_app({**PRODUCTION, "KEYRING": str(dev)})


def test_key_ring_from_environment_json(make_app: MakeApp) -> None:
    keyring = generate_keyring()
    app = make_app(KEYRING_JSON=keyring_to_json(keyring))
    agency = create_agency(app, duty_contact="01632 960000")
    with app.app_context():
        assert db.session.get(Agency, agency).duty_contact == "01632 960000"  # type: ignore[union-attr]


def _plant(app: Flask, count: int = 3) -> list[str]:
    agency = create_agency(app)
    ids = []
    with app.app_context():
        for n in range(count):
            household = households.register_household(agency, uprn=str(1000 + n))
            households.add_member(
                household,
                role="child",
                given_name=f"Kid{n}",
                family_name="Rotate",
                date_of_birth=date(2015, 1, n + 1),
            )
            involvements.register_involvement(household, agency, case_reference=f"REF-{n}")
            ids.append(household.id)
        db.session.commit()
    return ids


def _all_open(app: Flask) -> None:
    with app.app_context():
        for person in db.session.scalars(select(Person)):
            assert person.family_name == "Rotate"
        for involvement in db.session.scalars(select(Involvement)):
            assert involvement.case_reference.startswith("REF-")  # type: ignore[union-attr]
        for household in db.session.scalars(select(Household)):
            assert household.uprn is not None


def test_rotate_rewrap_retire(cli: CliRunner, make_app: MakeApp, tmp_path: Path) -> None:
    app = make_app()
    _plant(app)
    _run(cli, "keys", "rotate")
    status = _run(cli, "keys", "status")
    assert "active key version: 2" in status and "person: v1: 3" in status
    assert "still use key version 1" in _run(cli, "keys", "retire", "1", ok=False)
    out = _run(cli, "keys", "rewrap", "--batch-size", "2")
    # 1 agency + 3 households + 3 people + 3 involvements
    assert "re-wrapped 10 records under key version 2" in out
    status = _run(cli, "keys", "status")
    assert "v1" not in status and "person: v2: 3" in status
    assert "re-wrapped 0 records" in _run(cli, "keys", "rewrap")
    _run(cli, "keys", "retire", "1")
    assert json.loads((tmp_path / "keyring.json").read_text())["keks"].keys() == {"2"}
    _all_open(make_app())
    keyring_text = (tmp_path / "keyring.json").read_text()
    for secret in json.loads(keyring_text)["keks"].values():
        assert secret not in status and secret not in out


def test_active_key_cannot_be_retired(cli: CliRunner, make_app: MakeApp) -> None:
    make_app()
    assert "active" in _run(cli, "keys", "retire", "1", ok=False)

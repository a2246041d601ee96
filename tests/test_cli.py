"""The alertshare command: database, agencies and clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import main


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ALERTSHARE_DATABASE_URL", database_url)
    monkeypatch.setenv("ALERTSHARE_DATA_DIR", str(tmp_path))
    return CliRunner()


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_agency_and_client_lifecycle(run: CliRunner) -> None:
    _ok(
        run,
        "agency",
        "add",
        "medway-hv",
        "--name",
        "Medway Health Visiting",
        "--type",
        "health",
        "--duty-contact",
        "01634 000000",
    )
    assert "medway-hv\thealth\tactive" in _ok(run, "agency", "list")
    out = _ok(run, "client", "add", "medway-hv", "--name", "EMIS", "--scope", "households:read")
    client_id = out.split("client_id: ")[1].split()[0]
    assert "client_secret: " in out
    assert client_id in _ok(run, "client", "list", "--agency", "medway-hv")
    rotated = _ok(run, "client", "rotate-secret", client_id)
    assert rotated.split("client_secret: ")[1].split()[0] not in out
    _ok(run, "client", "revoke", client_id)
    assert "revoked" in _ok(run, "client", "list")
    _ok(run, "agency", "disable", "medway-hv")
    assert "medway-hv" not in _ok(run, "agency", "list")
    assert "disabled" in _ok(run, "agency", "list", "--all")


def test_bad_input_is_a_clear_error(run: CliRunner) -> None:
    result = run.invoke(
        main,
        ["agency", "add", "Bad Slug", "--name", "x", "--type", "health", "--duty-contact", "x"],
    )
    assert result.exit_code != 0
    assert "id:" in result.output and "Traceback" not in result.output
    result = run.invoke(
        main, ["client", "add", "nobody", "--name", "x", "--scope", "households:read"]
    )
    assert result.exit_code != 0 and "No agency" in result.output


def test_private_key_jwt_client_from_jwks_file(run: CliRunner, tmp_path: Path) -> None:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256")
    jwks = tmp_path / "jwks.json"
    import json

    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    _ok(
        run,
        "agency",
        "add",
        "kent-cs",
        "--name",
        "Kent",
        "--type",
        "children_social_care",
        "--duty-contact",
        "03000 411111",
    )
    out = _ok(
        run,
        "client",
        "add",
        "kent-cs",
        "--name",
        "Mosaic",
        "--scope",
        "warnings:write",
        "--jwks",
        str(jwks),
    )
    assert "client_secret" not in out
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    result = run.invoke(
        main,
        [
            "client",
            "add",
            "kent-cs",
            "--name",
            "Bad",
            "--scope",
            "warnings:write",
            "--jwks",
            str(private),
        ],
    )
    assert result.exit_code != 0 and "private key" in result.output.lower()


def test_db_current_reports_head(run: CliRunner) -> None:
    out = _ok(run, "db", "current")
    assert out.splitlines()[0].split(": ")[1].strip() == out.splitlines()[1].split(":")[1].strip()


def test_slug_long_enough_to_overflow_client_ids_is_refused(run: CliRunner) -> None:
    result = run.invoke(main, ["agency", "add", "a" * 48, "--name", "x", "--type", "health",
                               "--duty-contact", "x"])  # fmt: skip
    assert result.exit_code != 0 and "47" in result.output
    _ok(run, "agency", "add", "a" * 47, "--name", "x", "--type", "health", "--duty-contact", "x")
    out = _ok(run, "client", "add", "a" * 47, "--name", "x", "--scope", "households:read")
    assert len(out.split("client_id: ")[1].split()[0]) == 64


COMMANDS_NEEDING_A_DATABASE = [
    ["agency", "list"],
    ["client", "list"],
    ["audit", "verify"],
    ["audit", "checkpoint"],
    ["keys", "status"],
    ["db", "current"],
    ["serve"],
]


@pytest.fixture
def fresh_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no settings, as a new user has."""
    for name in ("ALERTSHARE_DATABASE_URL", "ALERTSHARE_DATA_DIR", "ALERTSHARE_KEYRING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args", COMMANDS_NEEDING_A_DATABASE, ids=" ".join)
def test_without_a_database_every_command_says_so_in_one_line(
    fresh_directory: Path, args: list[str]
) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert "no database at" in result.output and "alertshare db upgrade" in result.output
    assert list(fresh_directory.iterdir()) == []  # no stray data directory or key ring


def test_an_unmigrated_database_is_named_in_one_line(fresh_directory: Path) -> None:
    (fresh_directory / "alertshare-data").mkdir()
    (fresh_directory / "alertshare-data" / "alertshare.db").touch()
    result = CliRunner().invoke(main, ["agency", "list"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "not migrated (no schema)" in result.output
    assert "alertshare db upgrade" in result.output


def test_demo_then_other_commands_in_the_same_directory(fresh_directory: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--no-serve"])
    assert first.exit_code == 0, first.output
    assert "replaced" not in first.output
    assert "kent-childrens-services\tchildren_social_care\tactive" in _ok(runner, "agency", "list")
    assert '"ok": true' in _ok(runner, "audit", "verify")
    clients = _ok(runner, "client", "list")
    assert "\taudit:read:all" in clients  # the auditor's console
    case_systems = [line for line in clients.splitlines() if "households:read" in line]
    assert len(case_systems) == 2
    assert all("audit:read:all" not in line and "audit:read" in line for line in case_systems)
    again = runner.invoke(main, ["demo", "--no-serve"])
    assert again.exit_code == 0, again.output
    assert "secrets were replaced just now, and the old ones no longer work" in again.output
    assert sorted(p.name for p in fresh_directory.iterdir()) == ["alertshare-data"]

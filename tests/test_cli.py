"""The alertshare command: database, agencies and clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from service.cli import main
from tests.conftest import MakeApp


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


def _secret_client(run: CliRunner) -> tuple[str, str]:
    _ok(run, "agency", "add", "kent-hv", "--name", "Kent HV", "--type", "health",
        "--duty-contact", "03000 000000")  # fmt: skip
    out = _ok(run, "client", "add", "kent-hv", "--name", "EMIS", "--scope", "households:read")
    return out.split("client_id: ")[1].split()[0], out.split("client_secret: ")[1].split()[0]


def _me(http: Any, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "X-Acting-Practitioner": "hv-1",
               "X-Purpose-Of-Use": "case_work"}  # fmt: skip
    return int(http.get("/api/v1/me", headers=headers).status_code)


@pytest.mark.parametrize("revoke", [True, False])
def test_rotate_secret_revokes_old_tokens_only_when_asked(
    run: CliRunner, make_app: MakeApp, revoke: bool
) -> None:
    from tests.factories import ClientCredentials, get_token

    client_id, secret = _secret_client(run)
    http = make_app().test_client()
    token = get_token(http, ClientCredentials("kent-hv", client_id, secret))
    args = ["client", "rotate-secret", client_id] + (["--revoke-tokens"] if revoke else [])
    out = _ok(run, *args)
    new_secret = out.split("client_secret: ")[1].split()[0]
    if revoke:
        assert "revoked 1 live token" in out
        assert _me(http, token) == 401
    else:
        assert "live out their lifetime" in out
        assert _me(http, token) == 200
    fresh = get_token(http, ClientCredentials("kent-hv", client_id, new_secret))
    assert _me(http, fresh) == 200


def test_weak_client_key_is_refused_in_one_line(run: CliRunner, tmp_path: Path) -> None:
    import json
    import warnings

    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc.errors import SecurityWarning
    from joserfc.jwk import RSAKey

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc's own warning on short keys
        key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    jwks = tmp_path / "weak.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    _ok(run, "agency", "add", "kent-cs", "--name", "Kent", "--type", "children_social_care",
        "--duty-contact", "03000 411111")  # fmt: skip
    result = run.invoke(main, ["client", "add", "kent-cs", "--name", "Weak", "--scope",
                               "warnings:write", "--jwks", str(jwks)])  # fmt: skip
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "2048" in result.output and len(result.output.strip().splitlines()) == 1

"""Configuration precedence and the refusals of production mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service import ConfigError, create_app
from service.cli import main
from service.config import load_config, production_problems
from service.crypto import generate_keyring, save_keyring
from service.migrate import upgrade

STRONG_SECRET = "hN4w-Qe7Lr2Tz9Xk5Vb1Pc8Ym3Fs6Jd0Ga"
ISSUER = "https://alertshare.example.org"
POSTGRESQL = "postgresql+psycopg://x@h/x"


def test_defaults_then_environment_then_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTSHARE_TOKEN_EXPIRES_IN", "300")
    monkeypatch.setenv("ALERTSHARE_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("ALERTSHARE_AUDIT", "off")
    config = load_config({"LOG_LEVEL": "DEBUG"})
    assert config["AUDIT"] is False
    assert config["TOKEN_EXPIRES_IN"] == 300
    assert config["LOG_LEVEL"] == "DEBUG"
    assert config["MAX_CONTENT_LENGTH"] == 64 * 1024


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="ALERTSHARE_ENV"):
        load_config({"ENV": "staging"})


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/x"}, "SECRET_KEY is missing"),
        ({"SECRET_KEY": "", "DATABASE_URL": "postgresql+psycopg://x@h/x"}, "SECRET_KEY is missing"),
        ({"SECRET_KEY": "short", "DATABASE_URL": "postgresql+psycopg://x@h/x"}, "at least 32"),
        ({"SECRET_KEY": STRONG_SECRET, "DATABASE_URL": "postgresql+psycopg://x@h/x"}, "ISSUER"),
        (
            {"SECRET_KEY": STRONG_SECRET, "DATABASE_URL": "sqlite:///x.db", "ISSUER": ISSUER},
            "SQLite",
        ),
        (
            {
                "SECRET_KEY": STRONG_SECRET,
                "DATABASE_URL": "postgresql+psycopg://x@h/x",
                "AUDIT": False,
                "ISSUER": ISSUER,
            },
            "auditing cannot be switched off",
        ),
    ],
)
def test_production_refuses_unsafe_settings(overrides: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as error:
        create_app({"ENV": "production", **overrides})
    assert "\n" not in str(error.value)


@pytest.mark.skipif(
    not os.environ.get("ALERTSHARE_DATABASE_URL", "").startswith("postgresql"),
    reason="needs PostgreSQL",
)
def test_production_refuses_postgresql_without_synchronous_commit(
    database_url: str, tmp_path: Path
) -> None:
    keyring = tmp_path / "keyring.json"
    save_keyring(generate_keyring(), keyring)
    name = make_url(database_url).database
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    engine.dispose()
    settings = {"ENV": "production", "SECRET_KEY": STRONG_SECRET, "DATABASE_URL": database_url,
                "KEYRING": str(keyring), "ISSUER": ISSUER}  # fmt: skip
    with pytest.raises(ConfigError, match="synchronous_commit is off"):
        create_app(settings)


def _problems(**overrides: object) -> list[str]:
    settings = {"SECRET_KEY": STRONG_SECRET, "ISSUER": ISSUER, "DATABASE_URL": POSTGRESQL}
    return production_problems({**settings, **overrides})


def test_production_accepts_sound_settings() -> None:
    assert _problems() == []
    assert (
        _problems(SECRET_KEY="0123456789abcdef" * 2, ISSUER="https://as.example.org:8443/x") == []
    )


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (" " * 32, "SECRET_KEY is missing"),
        ("\t \n" * 16, "SECRET_KEY is missing"),
        (" " * 30 + "abc", "at least 32"),  # 3 characters, padded out with spaces
        ("s" * 40, "fewer than 8 different characters"),
        ("ab" * 20, "fewer than 8 different characters"),
        ("abc d" * 8, "fewer than 8 different characters"),
    ],
)
def test_production_refuses_blank_or_predictable_secrets(secret: str, reason: str) -> None:
    assert reason in _problems(SECRET_KEY=secret)[0]


@pytest.mark.parametrize(
    "issuer",
    [
        "https://",
        "https:///path",
        "https://:443",
        "http://alertshare.example.org",
        "alertshare.example.org",
        "https://alertshare.example.org?tenant=1",
        "https://alertshare.example.org/?",
        "https://alertshare.example.org#top",
        "https://admin:pw@alertshare.example.org",
        "https://alertshare.example.org:notaport",
        "https://alerts hare.example.org",
    ],
)
def test_production_refuses_an_issuer_that_is_not_an_https_url_with_a_host(issuer: str) -> None:
    (problem,) = _problems(ISSUER=issuer)
    assert problem.startswith("ALERTSHARE_ISSUER must be this server's https:// URL")


def test_url_schemes_are_case_insensitive(tmp_path: Path) -> None:
    url = f"SQLITE:///{tmp_path}/x.db"
    assert load_config({"DATABASE_URL": url})["DATABASE_URL"] == f"sqlite:///{tmp_path}/x.db"
    assert "SQLite is the embedded" in _problems(DATABASE_URL=url)[0]
    with pytest.raises(ConfigError, match="SQLite is the embedded") as error:
        create_app({"ENV": "production", "SECRET_KEY": STRONG_SECRET, "ISSUER": ISSUER,
                    "DATABASE_URL": url})  # fmt: skip
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql+psycopg://alertshare:hunter2@db:notaport/alertshare",
        "nosuchdatabase://alertshare:hunter2@db/alertshare",
        "postgresql+nosuchdriver://alertshare:hunter2@db/alertshare",
    ],
)
def test_an_unusable_database_url_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(ConfigError, match="ALERTSHARE_DATABASE_URL is not a usable") as error:
        load_config({"DATABASE_URL": url})
    assert "\n" not in str(error.value)
    assert "hunter2" not in str(error.value)


def test_a_setting_that_is_not_a_number_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALERTSHARE_MAX_CONTENT_LENGTH", "64k")
    with pytest.raises(ConfigError, match="ALERTSHARE_MAX_CONTENT_LENGTH must be a number"):
        load_config()


def test_keys_init_refuses_an_unusable_database_url_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTSHARE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ALERTSHARE_DATABASE_URL", "nosuchdatabase://x")
    result = CliRunner().invoke(main, ["keys", "init"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ALERTSHARE_DATABASE_URL is not a usable database URL")
    assert not (tmp_path / "keyring.json").exists()


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"ALERTSHARE_SECRET_KEY": " " * 32}, "SECRET_KEY is missing"),
        ({"ALERTSHARE_SECRET_KEY": "x" * 32}, "fewer than 8 different characters"),
        ({"ALERTSHARE_ISSUER": "https://"}, "ISSUER"),
        ({"ALERTSHARE_ISSUER": f"{ISSUER}?x=1"}, "ISSUER"),
        ({"ALERTSHARE_ISSUER": f"{ISSUER}#x"}, "ISSUER"),
        ({"ALERTSHARE_DATABASE_URL": "SQLITE:///{data}/alertshare.db"}, "SQLite is the embedded"),
        ({"ALERTSHARE_DATABASE_URL": "postgresql+psycopg://a:b@h:port/x"}, "not a usable"),
    ],
)
@pytest.mark.parametrize("entry", ["serve", "gunicorn"])
def test_production_refusals_are_one_line_from_the_real_command(
    database_url: str, tmp_path: Path, settings: dict[str, str], reason: str, entry: str
) -> None:
    """`alertshare serve`, and gunicorn on the WSGI module as an operator may run it, on a
    migrated database: a one-line reason, a failing exit status, no traceback."""
    keyring = tmp_path / "keyring.json"
    save_keyring(generate_keyring(), keyring)
    if "SQLITE" in settings.get("ALERTSHARE_DATABASE_URL", ""):
        # A migrated SQLite database, so that nothing but production mode refuses it.
        engine = create_engine(f"sqlite:///{tmp_path}/alertshare.db")
        upgrade(engine=engine)
        engine.dispose()
    env = {
        **os.environ,
        "ALERTSHARE_ENV": "production",
        "ALERTSHARE_DATA_DIR": str(tmp_path),
        "ALERTSHARE_DATABASE_URL": database_url,
        "ALERTSHARE_KEYRING": str(keyring),
        "ALERTSHARE_SECRET_KEY": STRONG_SECRET,
        "ALERTSHARE_ISSUER": ISSUER,
        **{key: value.format(data=tmp_path) for key, value in settings.items()},
    }
    argv = {
        "serve": [str(Path(sys.executable).parent / "alertshare"), "serve", "--port", "1"],
        "gunicorn": [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "-w", "1",
                     "--config", "python:service.gunicorn_conf", "service.wsgi:app"],
    }[entry]  # fmt: skip
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    (refusal,) = [line for line in result.stderr.splitlines() if reason in line]
    assert refusal.startswith("Error: " if entry == "serve" else "alertshare: "), refusal

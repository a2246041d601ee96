"""Configuration precedence and the refusals of production mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service import ConfigError, create_app
from service.config import load_config
from service.crypto import generate_keyring, save_keyring

STRONG_SECRET = "s" * 40
ISSUER = "https://alertshare.example.org"


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

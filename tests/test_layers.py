"""The layering the README describes holds, and its import-linter contracts would catch a breach."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH puts ``tree`` ahead of the installed checkout, so its packages are analysed.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def copy_of_the_code(tmp_path: Path) -> Path:
    for package in ("service", "schemas"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


@pytest.mark.parametrize(
    ("module", "breach", "contract"),
    [
        ("service/crypto/envelope.py", "import flask", "Crypto and the audit chain"),
        ("service/audit/chain.py", "import service.database", "Crypto and the audit chain"),
        ("service/models/household.py", "import service.api.access", "Models import no"),
        ("service/involvements.py", "from flask import request", "Use cases import no"),
        ("service/oauth/server.py", "import service.api.recording", "not imported from below"),
        ("service/webhooks/transport.py", "import service.database", "webhook transport knows"),
    ],
)
def test_a_breach_of_each_contract_is_caught(
    copy_of_the_code: Path, module: str, breach: str, contract: str
) -> None:
    assert _lint_imports(copy_of_the_code).returncode == 0  # the copy itself is clean
    path = copy_of_the_code / module
    path.write_text(path.read_text() + f"\n{breach}  # noqa\n")
    result = _lint_imports(copy_of_the_code)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout


def _touches_flask_request(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "flask":
            if any(alias.name == "request" for alias in node.names):
                return True
        if isinstance(node, ast.Attribute) and node.attr == "request":
            if isinstance(node.value, ast.Name) and node.value.id == "flask":
                return True
    return False


def test_only_the_api_touches_flask_request() -> None:
    touching = sorted(
        str(path.relative_to(ROOT))
        for package in ("service", "schemas")
        for path in (ROOT / package).rglob("*.py")
        if _touches_flask_request(path.read_text())
    )
    assert touching, "the API reads requests somewhere"
    assert [path for path in touching if not path.startswith("service/api/")] == []

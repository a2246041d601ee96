"""What every benchmark here needs: a fresh PostgreSQL database, a free loopback port and, for
a benchmark that brings its own, a private PostgreSQL cluster configured as for production."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

HOST = "127.0.0.1"


def recreate_database(url: str, drop_only: bool = False) -> None:
    """Drop the database ``url`` names (and, unless ``drop_only``, create it empty again)."""
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if not drop_only:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server's arbiter (graceful), then SIGKILL its process group if still there
    (any worker left behind by a killed arbiter). The process must lead its own group."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def production_settings() -> dict[str, str]:
    """PostgreSQL settings sized to this machine as PostgreSQL's tuning guidance sizes a
    dedicated database server: shared_buffers a quarter of the memory, effective_cache_size
    half. Everything else keeps its default (autovacuum on, fsync and synchronous_commit on),
    bar a larger max_wal_size, so a bulk load is not one checkpoint after another."""
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return {
        "shared_buffers": f"{memory_mb // 4}MB",
        "effective_cache_size": f"{memory_mb // 2}MB",
        "maintenance_work_mem": "512MB",
        "max_wal_size": "8GB",
    }


@contextmanager
def private_cluster(settings: dict[str, str], keep: bool = False) -> Iterator[str]:
    """Yield the URL (no database named) of a PostgreSQL cluster of this run's own: initdb into
    a temporary directory, started on a free loopback port with ``settings``, trust auth for
    the ``postgres`` user, stopped and removed afterwards (``keep``: left running, and named on
    stderr). Run as root, it runs as the postgres user (initdb refuses root); the machine's
    own server is untouched."""
    bindir = _postgres_bindir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
    data, log, port = root / "data", root / "postgresql.log", free_port()
    pg_ctl = [*as_postgres, f"{bindir}/pg_ctl", "-D", str(data), "-w"]
    url = f"postgresql+psycopg://postgres@{HOST}:{port}"
    stopped = True
    try:
        if as_postgres:
            shutil.chown(root, "postgres")
        _run([*as_postgres, f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres",
              "--no-locale", "-E", "UTF8"], log)  # fmt: skip
        conf = {"port": str(port), "listen_addresses": f"'{HOST}'",
                "unix_socket_directories": f"'{root}'", **settings}  # fmt: skip
        with (data / "postgresql.conf").open("a") as file:
            file.writelines(f"{name} = {value}\n" for name, value in conf.items())
        stopped = False  # from here on a server may be running, even if starting it fails
        _run([*pg_ctl, "-l", str(log), "-t", "120", "start"], log)
        yield url
    finally:
        if keep and not stopped:
            print(
                f"kept the cluster {url} running; stop it: {' '.join(pg_ctl)} stop", file=sys.stderr
            )
        elif not stopped:
            stopped = _stop(pg_ctl)
        if stopped and not keep:
            shutil.rmtree(root, ignore_errors=True)
        elif not keep:
            print(f"PostgreSQL in {data} did not stop; its directory is left", file=sys.stderr)


def _run(command: list[str], log: Path) -> None:
    """Run a PostgreSQL tool; on failure, raise with its output and the end of the log."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"{command[-1]} failed ({done.returncode}): {done.stdout}"
                           f"{done.stderr}{tail}")  # fmt: skip


def _stop(pg_ctl: list[str]) -> bool:
    """Stop the cluster (fast, then immediate); say whether it stopped."""
    for mode in ("fast", "immediate"):
        done = subprocess.run([*pg_ctl, "-m", mode, "-t", "60", "stop"], capture_output=True)
        status = subprocess.run([*pg_ctl, "status"], capture_output=True)
        if done.returncode == 0 or status.returncode == 3:  # 3: no server running
            return True
    return False


def _postgres_bindir() -> str:
    """Where initdb and pg_ctl are: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return str(Path(found).resolve().parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda path: int(Path(path).parts[-3]))  # fmt: skip
    if not versions:
        raise RuntimeError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    return str(Path(versions[-1]).parent)

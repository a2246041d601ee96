"""Print envelope encryption throughput for a 2 KB record and the re-wrap rate on SQLite.

Usage: python benchmarks/bench_crypto.py [--records 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from service import create_app, migrate
from service.crypto import LocalKeyProvider, RecordCipher, generate_keyring, save_keyring
from service.database import db
from service.key_rotation import rewrap_all
from service.keys import active_keys
from service.models import Agency, Household


def bench_seal_open(seconds: float = 2.0) -> float:
    """Return full envelope round trips (new data key, wrap, seal, unwrap, open) per second."""
    provider = LocalKeyProvider(generate_keyring())
    payload = "x" * 2048
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        cipher = RecordCipher.new(provider, "warning", f"id-{done}")
        sealed = cipher.seal("narrative", payload)
        version, wrapped = cipher.wrapped
        opened = RecordCipher.from_wrapped(provider, "warning", f"id-{done}", version, wrapped)
        assert opened.open("narrative", sealed) == payload
        done += 1
    return done / (time.perf_counter() - started)


def bench_rewrap(records: int) -> float:
    """Return records re-wrapped per second on a fresh SQLite database."""
    with tempfile.TemporaryDirectory() as directory:
        keyring_path = Path(directory) / "keyring.json"
        save_keyring(generate_keyring(), keyring_path)
        config = {"DATA_DIR": directory, "KEYRING": str(keyring_path), "LOG_LEVEL": "WARNING"}
        app = create_app(config)
        with app.app_context():
            migrate.upgrade()
            db.session.add(Agency(id="bench", name="Bench", agency_type="other", duty_contact="0"))
            for n in range(records):
                db.session.add(Household(created_by="bench", uprn=str(n + 1), town="Town"))
            db.session.commit()
            rotated = active_keys().keyring.rotated()
        save_keyring(rotated, keyring_path)
        app = create_app(config)
        with app.app_context():
            started = time.perf_counter()
            done = rewrap_all(active_keys().provider, batch_size=500)
            elapsed = time.perf_counter() - started
        assert done == records + 1
        return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    print(f"envelope encrypt+decrypt, 2 KB record: {bench_seal_open():,.0f} records/s")
    print(
        f"rewrap on SQLite, {args.records:,} records: {bench_rewrap(args.records):,.0f} records/s"
    )


if __name__ == "__main__":
    main()

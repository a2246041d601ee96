"""Time verify_chain over N synthetic, realistic audit entries held in memory.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_audit_verify.py [--entries N]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from service.audit.chain import (
    CHAINED_FIELDS,
    GENESIS_HASH,
    canonical_bytes,
    format_timestamp,
    verify_chain,
)

ACTIONS = ("warning:read", "warning:create", "household:search", "warning:update", "token:issue")
OUTCOMES = (("allowed", 200), ("allowed", 201), ("denied", 403), ("failed", 422))


def build_rows(count: int, seed: int = 7) -> list[tuple[Any, ...]]:
    """Build a valid chain of `count` rows in verify_chain's tuple shape."""
    rng = random.Random(seed)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    # Agencies, clients, people and households recur in real traffic, so draw from pools.
    agencies = [new_id() for _ in range(40)]
    clients = [f"client-{n:04d}" for n in range(200)]
    practitioners = [f"sw-{n:04d}" for n in range(2000)]
    households = [new_id() for _ in range(50_000)]
    warnings = [new_id() for _ in range(100_000)]
    moment = datetime(2026, 11, 23, 10, 57, 21, tzinfo=UTC)
    prev, rows = GENESIS_HASH, []
    for seq in range(1, count + 1):
        moment += timedelta(microseconds=rng.randrange(1, 50_000))
        outcome, status = rng.choice(OUTCOMES)
        agency = rng.choice(agencies)
        fields: dict[str, Any] = {
            "seq": seq,
            "occurred_at": format_timestamp(moment),
            "action": rng.choice(ACTIONS),
            "outcome": outcome,
            "status": status,
            "agency_id": agency,
            "client_id": rng.choice(clients),
            "practitioner": rng.choice(practitioners),
            "purpose": "pre_visit",
            "request_id": new_id(),
            "source_address": f"10.{seq % 250}.{seq % 199}.{seq % 253}",
            "targets": {"household": [rng.choice(households)], "warning": [rng.choice(warnings)]},
            "returned": {"warning": rng.sample(warnings, rng.randrange(0, 4))}
            if outcome == "allowed"
            else {},
            "kind": "entry",
        }
        digest = hashlib.sha256(prev + canonical_bytes(fields)).digest()
        rows.append((*(fields[name] for name in CHAINED_FIELDS), prev, digest))
        prev = digest
    return rows


def main() -> None:
    """Build the chain, verify it once, print the throughput."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = build_rows(args.entries)
    print(f"built {len(rows)} entries in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    report = verify_chain(rows)
    elapsed = time.perf_counter() - started
    assert report.ok and report.checked == args.entries, report
    rate = args.entries / elapsed
    print(f"verified {args.entries} entries in {elapsed:.2f} s ({rate:,.0f} entries/s)")


if __name__ == "__main__":
    main()

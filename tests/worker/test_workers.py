"""Workers that die and workers side by side: nothing lost, and nothing sent twice by two."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import ON_POSTGRES
from tests.worker.conftest import Workers, World, wait_for


def _expected(world: World) -> set[tuple[str, str]]:
    """(agency, notification id) of every delivery the outbox wrote."""
    by_webhook = {a.webhook_id: slug for slug, a in world.agencies.items()}
    return {(by_webhook[d.webhook_id], d.notification_id) for d in world.deliveries()}


def test_a_worker_killed_mid_batch_loses_nothing(world: World, workers: Workers) -> None:
    world.agency("issuer", webhook=False)
    for slug in ("a", "b"):
        world.agency(slug, webhook=False)
    households = [world.household("issuer", "a", "b") for _ in range(50)]
    for slug in ("a", "b"):  # after the households: only the warnings' events are sent
        world.agencies[slug].webhook_id, world.agencies[slug].secret = world.add_webhook(
            slug, world.receivers.url(slug)
        )
    for household in households:
        world.publish("issuer", household)
    expected = _expected(world)
    assert len(expected) == 100  # 50 warnings, to two agencies each
    world.receivers.delay = 0.02

    first = workers.start("--batch", "20")
    wait_for(lambda: len(world.receivers.received) >= 30, what="30 posts")
    first.kill()  # SIGKILL: no chance to record or release what it holds
    first.wait()
    assert len(world.receivers.received) < 100
    assert world.deliveries(status="pending")

    workers.start("--batch", "20", name="w2")
    wait_for(lambda: not world.deliveries(status="pending"), timeout=30, what="all delivered")
    got = {(r.agency, r.headers["webhook-id"]) for r in world.receivers.received}
    assert got == expected
    for post in world.receivers.received:
        assert post.headers["webhook-id"] == post.event["id"]  # a duplicate keeps its id
    assert {d.status for d in world.deliveries()} == {"delivered"}


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent workers need PostgreSQL's SKIP LOCKED")
def test_two_workers_deliver_everything_exactly_once(world: World, workers: Workers) -> None:
    world.agency("issuer", webhook=False)
    slugs = [f"agency-{n:02d}" for n in range(20)]
    for slug in slugs:
        world.agency(slug, webhook=False)
    households = [world.household("issuer", *slugs) for _ in range(10)]
    for slug in slugs:
        world.agencies[slug].webhook_id, world.agencies[slug].secret = world.add_webhook(
            slug, world.receivers.url(slug)
        )
    for household in households:
        world.publish("issuer", household)
    expected = _expected(world)
    assert len(expected) == 200  # 10 warnings, to 20 agencies each

    for name in ("w1", "w2"):
        workers.start("--batch", "10", "--lease", "30", name=name)
    wait_for(lambda: not world.deliveries(status="pending"), timeout=30, what="all delivered")
    counts = Counter((r.agency, r.headers["webhook-id"]) for r in world.receivers.received)
    assert set(counts) == expected
    assert max(counts.values()) == 1
    # Both took part (the claim skips rows the other holds rather than waiting on them).
    attempts = {name: workers.log(name).count('"delivery attempt"') for name in ("w1", "w2")}
    assert all(attempts.values()), attempts

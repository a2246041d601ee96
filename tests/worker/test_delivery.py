"""What the worker sends, to whom, and what it does when a receiver fails, goes or comes back."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from service.database import db, utcnow
from service.models.audit import AuditEntry
from service.models.notification import Notification, Webhook
from service.unit_of_work import unit_of_work
from tests.worker.conftest import PLANTED, Workers, World, wait_for

FAST = {"ALERTSHARE_DELIVERY_SCHEDULE": "0.2,0.2,0.2"}


def test_each_involved_agency_gets_one_signed_thin_post_and_the_issuer_none(
    world: World, workers: Workers, tmp_path: Path
) -> None:
    for slug in ("issuer", "health", "school"):
        world.agency(slug)
    household = world.household("issuer", "health", "school")
    warning = world.publish("issuer", household)
    worker = workers.start("--checkpoint-every", "0.5", "--checkpoint-dir", str(tmp_path / "cp"))

    wait_for(lambda: len(world.receivers.of_type("warning.published")) >= 2, what="2 posts")
    wait_for(lambda: not world.deliveries(status="pending"), what="all recorded")
    time.sleep(0.3)  # a duplicate would arrive within a poll or two
    for slug in ("health", "school"):
        (post,) = world.receivers.of(slug, "warning.published")
        secret = world.agencies[slug].secret
        assert secret is not None
        event = Verifier(secret).verify(post.body, post.headers)
        assert event["type"] == "warning.published"
        assert post.headers["webhook-id"] == event["id"]
        assert event["data"]["warning_id"] == warning["id"]
        assert event["data"]["household_id"] == household
        assert event["data"]["risk_level"] == "high"
        assert event["data"]["case_reference"] == "CASE-1"  # the recipient's own
        assert event["timestamp"].endswith("+00:00")  # UTC, written as the API writes times
        for value in PLANTED:
            assert value not in post.body.decode(), value
    assert world.receivers.of("issuer", "warning.published") == []

    delivered = world.deliveries(status="delivered")
    assert delivered and all(d.attempts == 1 and d.locked_by is None for d in delivered)
    with world.app.app_context():
        entries = list(
            db.session.scalars(select(AuditEntry).where(AuditEntry.action == "delivery:attempt"))
        )
        assert {e.outcome for e in entries} == {"allowed"}
        named = {i for e in entries for i in json.loads(e.targets)["delivery"]}
        assert named == {d.id for d in delivered}
        for entry in entries:
            assert (entry.client_id, entry.status) == ("alertshare-worker", 200)
            for value in PLANTED:
                assert value not in str(entry.as_dict())
    wait_for(lambda: list((tmp_path / "cp").glob("checkpoint-*.json")), what="a checkpoint")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    lines = [json.loads(line) for line in workers.log("w1").splitlines() if line.startswith("{")]
    attempts = [line for line in lines if line["message"] == "delivery attempt"]
    assert attempts and all(a["outcome"] == "delivered" for a in attempts)
    assert "Pike" not in workers.log("w1") and "/hook/" not in workers.log("w1")


def test_a_failing_receiver_is_retried_with_the_same_id_until_delivered(
    world: World, workers: Workers
) -> None:
    world.agency("issuer")
    world.agency("health")
    world.receivers.scripts["health", "warning.published"] = [500, 500]  # then 200
    world.publish("issuer", world.household("issuer", "health"))
    workers.start(**FAST)

    posts = wait_for(lambda: [p for p in world.receivers.of("health", "warning.published")
                              if len(world.receivers.of("health", "warning.published")) >= 3],
                     what="three attempts")  # fmt: skip
    assert len(posts) == 3
    assert len({p.headers["webhook-id"] for p in posts}) == 1
    # Signed afresh each attempt: a new timestamp (whole seconds) gets a new signature.
    stamps = {(p.headers["webhook-timestamp"], p.headers["webhook-signature"]) for p in posts}
    assert len(stamps) == len({p.headers["webhook-timestamp"] for p in posts})
    (delivery,) = wait_for(lambda: [
        d for d in world.deliveries(status="delivered")
        if d.notification_id == posts[0].event["id"]])  # fmt: skip
    assert (delivery.attempts, delivery.last_status) == (3, 200)
    time.sleep(0.5)
    assert len(world.receivers.of("health", "warning.published")) == 3


def test_a_receiver_down_past_the_schedule_is_dead_lettered_then_replayed(
    world: World, workers: Workers
) -> None:
    world.agency("issuer")
    health = world.agency("health")
    server = world.receivers.server
    server.stop()  # down: connections refused
    world.publish("issuer", world.household("issuer", "health"))
    workers.start(**FAST)

    wait_for(lambda: not world.deliveries(status="pending"), what="the schedule to run out")
    dead = world.deliveries(status="dead")
    assert len(dead) == len(world.deliveries()) >= 2  # the warning, the involvement, ...
    assert all(d.attempts == 4 and d.last_status is None and d.last_error for d in dead)
    assert all("could not connect" in (d.last_error or "") for d in dead)

    server.start()  # back up, on the same port
    for slug, agency in world.agencies.items():  # each agency replays its dead letters
        path = f"/webhooks/{agency.webhook_id}/deliveries"
        for letter in world.call(slug, "GET", f"{path}?status=dead")["items"]:
            replayed = world.call(slug, "POST", f"{path}/{letter['id']}/replay", 202)
            assert (replayed["status"], replayed["attempts"]) == ("pending", 0)
    wait_for(lambda: world.receivers.of("health", "warning.published"), what="the replay")
    wait_for(lambda: len(world.deliveries(status="delivered")) == len(dead), what="delivered")
    secret = health.secret
    assert secret is not None
    for post in world.receivers.of("health"):
        Verifier(secret).verify(post.body, post.headers)


def test_410_disables_the_webhook_and_tells_its_agency(world: World, workers: Workers) -> None:
    world.agency("issuer")
    health = world.agency("health")
    world.receivers.scripts["health"] = [410] * 10
    household = world.household("issuer", "health")
    world.publish("issuer", household)
    world.publish("issuer", household)  # more for health in the same batch, after the 410
    assert len(world.deliveries(webhook_id=health.webhook_id)) >= 2
    workers.start(**FAST)

    wait_for(lambda: world.receivers.of("health"), what="a post")
    disabled = select(Webhook).where(
        Webhook.id == health.webhook_id, Webhook.disabled_at.is_not(None)
    )

    def read_disabled() -> Webhook | None:
        # Each poll in a transaction of its own, ended at once: on SQLite an open one holds
        # the only write lock, and the worker recording the 410 would wait on the test.
        try:
            return db.session.scalar(disabled)
        finally:
            db.session.commit()

    with world.app.app_context():
        webhook = wait_for(read_disabled)
        assert webhook.disabled_reason and "410" in webhook.disabled_reason
        (told,) = db.session.scalars(
            select(Notification).where(Notification.type == "webhook.disabled")
        )
        assert (told.agency_id, told.subject_id) == ("health", health.webhook_id)
    time.sleep(0.5)
    # Nothing more is sent to a disabled endpoint: its other deliveries fail without a call.
    assert len(world.receivers.of("health")) == 1
    wait_for(lambda: not world.deliveries(status="pending"), what="nothing pending")
    assert {d.status for d in world.deliveries(webhook_id=health.webhook_id)} == {"failed"}


def test_a_restricted_warning_reaches_only_the_agencies_it_is_shared_with(
    world: World, workers: Workers
) -> None:
    for slug in ("issuer", "shared", "excluded"):
        world.agency(slug)
    household = world.household("issuer", "shared", "excluded")
    world.publish("issuer", household, handling="restricted", shared_with=["shared"])
    workers.start()

    wait_for(lambda: world.receivers.of("shared", "warning.published"), what="the shared one")
    wait_for(lambda: not world.deliveries(status="pending"), what="nothing pending")
    assert world.receivers.of("excluded", "warning.published") == []
    assert world.receivers.of("issuer", "warning.published") == []


def test_sigterm_finishes_the_delivery_in_hand_and_exits_0(world: World, workers: Workers) -> None:
    world.agency("issuer")
    for n in range(3):
        world.agency(f"a{n}")
    world.publish("issuer", world.household("issuer", "a0", "a1", "a2"))
    world.receivers.delay = 0.6  # well within the 1 s timeout the workers here are given
    worker = workers.start("--lease", "60")

    wait_for(lambda: world.receivers.received, what="a first post")
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=5) == 0
    assert time.monotonic() - started < 3
    # The one in hand was recorded; the rest of the batch was handed back, not left leased.
    in_hand = world.receivers.received[0].headers["webhook-id"]
    rows = world.deliveries()
    assert [d.status for d in rows if d.notification_id == in_hand] == ["delivered"]
    assert all(d.locked_by is None for d in rows)
    assert any(d.status == "pending" for d in rows)


def test_both_secrets_sign_while_a_rotation_overlaps(world: World, workers: Workers) -> None:
    health = world.agency("health")
    path = f"/webhooks/{health.webhook_id}"
    rotated = world.call("health", "POST", f"{path}/rotate-secret", json={"overlap_hours": 1})
    old, new = health.secret, rotated["secret"]
    assert old is not None and new != old
    world.call("health", "POST", f"{path}/test", 202)
    workers.start(**FAST)

    (post,) = wait_for(lambda: world.receivers.of("health", "webhook.test"), what="the test")
    for secret in (old, new):  # a receiver still on the old secret, and one already switched
        assert Verifier(secret).verify(post.body, post.headers)["type"] == "webhook.test"
    with world.app.app_context(), unit_of_work():  # the overlap is over
        db.session.get(Webhook, health.webhook_id).previous_secret_until = utcnow()
    world.call("health", "POST", f"{path}/test", 202)
    wait_for(lambda: len(world.receivers.of("health", "webhook.test")) == 2, what="again")
    after = world.receivers.of("health", "webhook.test")[1]
    Verifier(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(old).verify(after.body, after.headers)

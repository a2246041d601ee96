"""The outbox: notifications to agencies, their webhook endpoints and each delivery to one.

A notification is one event for one recipient agency: its feed entry, and (through
``Delivery``) what each of the agency's webhook endpoints is sent. Notifications hold ids and a
risk level, never names, addresses or narrative; the recipient fetches detail through the
audited API.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, utcnow
from service.models.encrypted import EncryptedRecord, Personal, new_id

EVENT_TYPES = (
    "warning.published",
    "warning.updated",
    "warning.withdrawn",
    "warning.closed",
    "warning.review_due",
    "warning.accessed",
    "involvement.added",
    "incident.recorded",
    "webhook.disabled",
    "webhook.test",
)
DELIVERY_STATUSES = ("pending", "delivered", "failed", "dead")

# SQLite gives INTEGER PRIMARY KEY columns their rowid only under that exact type name.
_Sequence = BigInteger().with_variant(Integer(), "sqlite")


class Notification(Base):
    """One event for one recipient agency, in the agency's feed (ordered by ``seq``)."""

    __tablename__ = "notification"
    __table_args__ = (
        Index("ix_notification_agency_seq", "agency_id", "seq"),
        # Events that must happen at most once (an access per reader per day, a review per
        # date) carry a key; the database, not a race, decides.
        Index("uq_notification_once", "once_key", unique=True),
    )

    # Assigned in commit order (service.outbox holds a lock from insert to commit), so a
    # feed read after cursor N never misses an event that commits later with a lower number.
    seq: Mapped[int] = mapped_column(_Sequence, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"))
    type: Mapped[str] = mapped_column(String(32))
    household_id: Mapped[str | None] = mapped_column(ForeignKey("household.id"), default=None)
    warning_id: Mapped[str | None] = mapped_column(
        ForeignKey("warning.id"), default=None, index=True
    )
    subject_id: Mapped[str | None] = mapped_column(String(64), default=None)  # incident etc.
    risk_level: Mapped[str | None] = mapped_column(String(8), default=None)
    once_key: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Acknowledgement(EncryptedRecord, Base):
    """A recipient agency's practitioner has read a notification (once per notification)."""

    __tablename__ = "acknowledgement"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notification.id"), unique=True)
    acknowledged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    practitioner_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

    practitioner = Personal()


def subscribed(event_types: str, event_type: str) -> bool:
    """Say whether an endpoint with these ``event_types`` (space-separated; "" for every
    type) takes ``event_type``."""
    return not event_types or event_type in event_types.split()


class Webhook(EncryptedRecord, Base):
    """An agency's webhook endpoint; its signing secrets are sealed like personal data."""

    __tablename__ = "webhook"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[str] = mapped_column(Text, default="")  # space-separated; "" = all
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    secret = Personal()
    previous_secret = Personal()

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign now: the current one, and the previous during its overlap."""
        secrets = [self.secret]
        until = self.previous_secret_until
        if self.previous_secret is not None and until is not None and now < until:
            secrets.append(self.previous_secret)
        return secrets


class Delivery(Base):
    """One notification to one webhook endpoint: attempted until delivered, failed or dead."""

    __tablename__ = "delivery"
    __table_args__ = (
        # The worker's claim: due work, oldest first.
        Index("ix_delivery_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_delivery_webhook_created", "webhook_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notification.id"), index=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhook.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    locked_by: Mapped[str | None] = mapped_column(String(64), default=None)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    # What went wrong, in our words (status, timeout, refused address). The receiver's own
    # answer is not kept: it could echo personal data, which is never stored in plaintext.
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class AgencyNotificationSettings(Base):
    """An agency's choices about the events it receives; absent means the defaults."""

    __tablename__ = "agency_notification_settings"

    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"), primary_key=True)
    # Tell the agency when another agency reads the detail of a warning it issued.
    warning_accessed: Mapped[bool] = mapped_column(Boolean, default=True)

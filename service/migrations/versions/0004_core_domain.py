"""core domain: incidents, warnings, their versions and shares; involvement contacts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 01:06:09.576558
"""

import sqlalchemy as sa
from alembic import op

import service.database

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("household_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("police_reported", sa.Boolean(), nullable=False),
        sa.Column("summary_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("description_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("crime_reference_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("recorded_at", service.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_incident_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["household_id"], ["household.id"], name=op.f("fk_incident_household_id_household")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident")),
    )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index(
            "ix_incident_household_occurred", ["household_id", "occurred_on"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_incident_key_version"), ["key_version"], unique=False)

    op.create_table(
        "warning",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("household_id", sa.String(length=36), nullable=False),
        sa.Column("issuing_agency_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("risk_level", sa.String(length=8), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("precautions", sa.Text(), nullable=False),
        sa.Column("handling", sa.String(length=16), nullable=False),
        sa.Column("children_in_household", sa.Boolean(), nullable=False),
        sa.Column("subject_informed", sa.Boolean(), nullable=False),
        sa.Column("informed_on", sa.Date(), nullable=True),
        sa.Column("recheck_on", sa.Date(), nullable=True),
        sa.Column("review_by", sa.Date(), nullable=False),
        sa.Column("created_at", service.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", service.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("persons_of_concern_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("reason_withheld_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("status_reason_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["household_id"], ["household.id"], name=op.f("fk_warning_household_id_household")
        ),
        sa.ForeignKeyConstraint(
            ["issuing_agency_id"], ["agency.id"], name=op.f("fk_warning_issuing_agency_id_agency")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warning")),
    )
    with op.batch_alter_table("warning", schema=None) as batch_op:
        batch_op.create_index(
            "ix_warning_household_status", ["household_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_warning_issuer_created", ["issuing_agency_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_warning_key_version"), ["key_version"], unique=False)
        batch_op.create_index(batch_op.f("ix_warning_review_by"), ["review_by"], unique=False)

    op.create_table(
        "warning_incident",
        sa.Column("warning_id", sa.String(length=36), nullable=False),
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incident.id"], name=op.f("fk_warning_incident_incident_id_incident")
        ),
        sa.ForeignKeyConstraint(
            ["warning_id"], ["warning.id"], name=op.f("fk_warning_incident_warning_id_warning")
        ),
        sa.PrimaryKeyConstraint("warning_id", "incident_id", name=op.f("pk_warning_incident")),
    )
    with op.batch_alter_table("warning_incident", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_warning_incident_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "warning_share",
        sa.Column("warning_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_warning_share_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["warning_id"], ["warning.id"], name=op.f("fk_warning_share_warning_id_warning")
        ),
        sa.PrimaryKeyConstraint("warning_id", "agency_id", name=op.f("pk_warning_share")),
    )
    with op.batch_alter_table("warning_share", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_warning_share_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "warning_version",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("warning_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("changed_at", service.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("snapshot_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["changed_by"], ["agency.id"], name=op.f("fk_warning_version_changed_by_agency")
        ),
        sa.ForeignKeyConstraint(
            ["warning_id"], ["warning.id"], name=op.f("fk_warning_version_warning_id_warning")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warning_version")),
    )
    with op.batch_alter_table("warning_version", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_warning_version_key_version"), ["key_version"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_warning_version_warning_id"), ["warning_id"], unique=False
        )

    with op.batch_alter_table("involvement", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lead_contact_sealed", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("ended_reason_sealed", sa.LargeBinary(), nullable=True))
        batch_op.create_index(
            "ix_involvement_agency_household", ["agency_id", "household_id"], unique=False
        )
        batch_op.create_index(
            "uq_involvement_current", ["agency_id", "household_id"], unique=True,
            sqlite_where=sa.text("ended_at IS NULL"), postgresql_where=sa.text("ended_at IS NULL"),
        )  # fmt: skip

    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("updated_at", service.database.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.drop_column("updated_at")

    with op.batch_alter_table("involvement", schema=None) as batch_op:
        batch_op.drop_index("uq_involvement_current")
        batch_op.drop_index("ix_involvement_agency_household")
        batch_op.drop_column("ended_reason_sealed")
        batch_op.drop_column("lead_contact_sealed")

    with op.batch_alter_table("warning_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_warning_version_warning_id"))
        batch_op.drop_index(batch_op.f("ix_warning_version_key_version"))

    op.drop_table("warning_version")
    with op.batch_alter_table("warning_share", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_warning_share_agency_id"))

    op.drop_table("warning_share")
    with op.batch_alter_table("warning_incident", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_warning_incident_incident_id"))

    op.drop_table("warning_incident")
    with op.batch_alter_table("warning", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_warning_review_by"))
        batch_op.drop_index(batch_op.f("ix_warning_key_version"))
        batch_op.drop_index("ix_warning_issuer_created")
        batch_op.drop_index("ix_warning_household_status")

    op.drop_table("warning")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_key_version"))
        batch_op.drop_index("ix_incident_household_occurred")
        batch_op.drop_index(batch_op.f("ix_incident_agency_id"))

    op.drop_table("incident")

"""oauth: secret generations of clients and of the tokens issued under them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 09:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Plain ALTER TABLE, also on SQLite (3.35+ drops columns in place): a batch copy of oauth_client
# would have to drop the table oauth_token's foreign key points at, refused once tokens exist.
# The server default fills existing rows: every client and token starts at generation 0.
COLUMNS = {
    "oauth_client": ("secret_generation", "tokens_valid_from_generation"),
    "oauth_token": ("secret_generation",),
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for column in columns:
            op.add_column(
                table, sa.Column(column, sa.Integer(), server_default="0", nullable=False)
            )


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        for column in columns:
            op.drop_column(table, column)

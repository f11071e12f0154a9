"""Transfers: a case marked before its papers arrive waits in ``pending_transfers``; the
state ``transferred`` (a VARCHAR value, no schema change) ends a case at a desk whose citizen
went to a centre of another desk.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_transfers",
        sa.Column("case_id", sa.String(64), primary_key=True),
        sa.Column("to_centre", sa.String(64), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pending_transfers")

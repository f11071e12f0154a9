"""The audit chain cannot fork: each entry's previous hash is unique.

Appends are serialised (``db.append_audit``); this constraint makes a fork impossible to
commit even if some writer went around that. A chain that already forked cannot take the
constraint: the upgrade then stops and names the forked entries (check them with ``tongban desk
audit verify`` and keep the database as evidence; do not repair it by hand).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    forks = op.get_bind().execute(sa.text(
        "SELECT prev_hash, MIN(id), MAX(id) FROM audit GROUP BY prev_hash "
        "HAVING COUNT(*) > 1")).all()
    if forks:
        ids = ", ".join(f"{low}-{high}" for _, low, high in forks[:10])
        raise RuntimeError(f"the audit chain has forked at {len(forks)} place(s) (entry ids "
                           f"{ids}): it cannot be made unique; keep this database as it is "
                           "and report it")
    with op.batch_alter_table("audit") as batch:
        batch.create_unique_constraint("uq_audit_prev_hash", ["prev_hash"])


def downgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.drop_constraint("uq_audit_prev_hash", type_="unique")

"""Case transitions hold under concurrency: a version per case, the centre a case is being
transferred to, and a counter per centre and day that numbers cases.

The counters start from the highest number already given each centre and day.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import re
from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NUMBER = re.compile(r"^(?P<centre>.+)-(?P<day>\d{8})-(?P<n>\d+)$")


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("transfer_to", sa.String(64), nullable=True))
    counters = op.create_table(
        "case_counters",
        sa.Column("centre", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("last_number", sa.Integer, nullable=False),
    )
    last: dict[tuple[str, date], int] = {}
    numbers = op.get_bind().execute(sa.text(
        "SELECT case_number FROM cases WHERE case_number IS NOT NULL")).scalars()
    for number in numbers:
        if (match := NUMBER.match(number)) is None:
            continue
        key = match["centre"], date(int(match["day"][:4]), int(match["day"][4:6]),
                                    int(match["day"][6:]))
        last[key] = max(last.get(key, 0), int(match["n"]))
    if last:
        op.bulk_insert(counters, [{"centre": c, "day": d, "last_number": n}
                                  for (c, d), n in sorted(last.items())])


def downgrade() -> None:
    op.drop_table("case_counters")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("transfer_to")
        batch.drop_column("version")

"""occupancy rows never span more than a day

The conflict check (``scheduler.conflicts``) looks for clashing rows starting
less than a day before each window, which keeps every lookup a short index
range.  On PostgreSQL this CHECK makes that bound a database fact; on SQLite
(embedded, single node) ``SeriesContext.place`` is the only writer and builds
every window inside one day.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 13:00:00
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE occupancy ADD CONSTRAINT occupancy_within_a_day "
                   "CHECK (ends_at > starts_at AND ends_at - starts_at < interval '1 day')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE occupancy DROP CONSTRAINT occupancy_within_a_day")

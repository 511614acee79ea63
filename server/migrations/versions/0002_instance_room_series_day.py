"""lesson_instance lookups by (main classroom, day) and (series, day)

A region's day timetable is the lessons its classrooms give on that day plus
the lessons of the series its classrooms receive.  Driven from the region's
side, each is one index probe per classroom / series with these two indexes,
instead of a scan over the whole province's lessons of that day
(``lesson_instance_day`` leads with ``day``).  Measured by ``bench/scheduler.py``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:00:00
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lesson_instance', schema=None) as batch_op:
        batch_op.create_index('lesson_instance_room_day', ['main_classroom_id', 'day'], unique=False)
        batch_op.create_index('lesson_instance_series_day', ['series_id', 'day'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lesson_instance', schema=None) as batch_op:
        batch_op.drop_index('lesson_instance_series_day')
        batch_op.drop_index('lesson_instance_room_day')

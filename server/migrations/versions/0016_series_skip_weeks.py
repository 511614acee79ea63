"""series skip_weeks: the teaching weeks a series booked by the slot finder has no lesson (the slot was taken)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 09:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lesson_series') as batch:
        batch.add_column(sa.Column('skip_weeks', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('lesson_series') as batch:
        batch.drop_column('skip_weeks')

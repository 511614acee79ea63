"""series stream_from: from how many home students a famous-school lesson's audience watches the HLS stream

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 02:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lesson_series') as batch:
        batch.add_column(sa.Column('stream_from', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('lesson_series') as batch:
        batch.drop_column('stream_from')

"""crash recovery: uncertain presence in teaching records, the node that writes a recording

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('teaching_record') as batch:
        batch.add_column(sa.Column('uncertain_s', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('attendance_record') as batch:
        batch.add_column(sa.Column('uncertain_s', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('recording') as batch:
        batch.add_column(sa.Column('node', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('recording') as batch:
        batch.drop_column('node')
    with op.batch_alter_table('attendance_record') as batch:
        batch.drop_column('uncertain_s')
    with op.batch_alter_table('teaching_record') as batch:
        batch.drop_column('uncertain_s')

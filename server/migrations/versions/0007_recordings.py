"""recordings: lesson recordings (录播) for replay and the resource pool

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'recording',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.Enum('recording', 'ready', 'failed', 'expired', name='recordingstatus',
                                    native_enum=False, length=20), nullable=False),
        sa.Column('directory', sa.String(length=300), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('ended_at', sa.DateTime(), nullable=True),
        sa.Column('duration_s', sa.Float(), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('codecs', sa.String(length=100), nullable=False),
        sa.Column('files', sa.JSON(), nullable=True),
        sa.Column('composed_name', sa.String(length=100), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('expired_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_recording_instance_id', 'recording', ['instance_id'])


def downgrade() -> None:
    op.drop_index('ix_recording_instance_id', table_name='recording')
    op.drop_table('recording')

"""room placement: which node owned a lesson's room, and when

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 15:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'room_placement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('node_id', sa.String(length=100), nullable=False),
        sa.Column('placed_by', sa.String(length=100), nullable=False),
        sa.Column('weight', sa.Integer(), nullable=False),
        sa.Column('placed_at', sa.DateTime(), nullable=False),
        sa.Column('released_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_room_placement_instance_id', 'room_placement', ['instance_id'])


def downgrade() -> None:
    op.drop_index('ix_room_placement_instance_id', table_name='room_placement')
    op.drop_table('room_placement')

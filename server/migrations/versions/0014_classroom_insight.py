"""classroom insight: the S-T analysis of a lesson and who spoke, stored with its teaching record

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 06:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('teaching_record') as batch:
        batch.add_column(sa.Column('st_rt', sa.Float(), nullable=True))
        batch.add_column(sa.Column('st_ch', sa.Float(), nullable=True))
        batch.add_column(sa.Column('st_type', sa.String(length=20), nullable=True))
        batch.add_column(sa.Column('receivers_spoke', sa.Integer(), nullable=True))
    with op.batch_alter_table('attendance_record') as batch:
        batch.add_column(sa.Column('spoken_s', sa.Float(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('speech_turns', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('attendance_record') as batch:
        batch.drop_column('speech_turns')
        batch.drop_column('spoken_s')
    with op.batch_alter_table('teaching_record') as batch:
        batch.drop_column('receivers_spoke')
        batch.drop_column('st_type')
        batch.drop_column('st_ch')
        batch.drop_column('st_rt')

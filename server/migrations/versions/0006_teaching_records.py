"""teaching records: the session event log, teaching and attendance records

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _enum(*values: str, name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=20)


def upgrade() -> None:
    op.create_table(
        'session_event',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('kind', _enum('join', 'leave', 'disconnect', 'resume', 'publish', 'unpublish', 'stage_on',
                                'stage_off', 'mute', 'unmute', 'hand_raise', 'hand_lower', 'chat', 'link_quality',
                                name='eventkind'), nullable=False),
        sa.Column('participant_id', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('classroom_id', sa.Integer(), nullable=True),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('data', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('session_event_instance_at', 'session_event', ['instance_id', 'at', 'id'])
    op.create_table(
        'teaching_record',
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('status', _enum('held', 'partly_held', 'missed', 'cancelled', name='recordstatus'), nullable=False),
        sa.Column('actual_start', sa.DateTime(), nullable=True),
        sa.Column('actual_end', sa.DateTime(), nullable=True),
        sa.Column('duration_s', sa.Integer(), nullable=False),
        sa.Column('late_s', sa.Integer(), nullable=True),
        sa.Column('on_time', sa.Boolean(), nullable=True),
        sa.Column('expected_receivers', sa.Integer(), nullable=False),
        sa.Column('attended_receivers', sa.Integer(), nullable=False),
        sa.Column('recording_id', sa.Integer(), nullable=True),
        sa.Column('computed_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id']),
        sa.PrimaryKeyConstraint('instance_id'),
    )
    op.create_table(
        'attendance_record',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('classroom_id', sa.Integer(), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('first_join', sa.DateTime(), nullable=True),
        sa.Column('last_leave', sa.DateTime(), nullable=True),
        sa.Column('present_s', sa.Integer(), nullable=False),
        sa.Column('disconnects', sa.Integer(), nullable=False),
        sa.Column('stage_count', sa.Integer(), nullable=False),
        sa.Column('stage_s', sa.Integer(), nullable=False),
        sa.Column('loss_p50', sa.Float(), nullable=True),
        sa.Column('loss_p95', sa.Float(), nullable=True),
        sa.Column('rtt_p50_ms', sa.Float(), nullable=True),
        sa.Column('rtt_p95_ms', sa.Float(), nullable=True),
        sa.Column('poor_link_s', sa.Integer(), nullable=False),
        sa.Column('link_samples', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['teaching_record.instance_id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_attendance_record_instance_id', 'attendance_record', ['instance_id'])


def downgrade() -> None:
    op.drop_index('ix_attendance_record_instance_id', table_name='attendance_record')
    op.drop_table('attendance_record')
    op.drop_table('teaching_record')
    op.drop_index('session_event_instance_at', table_name='session_event')
    op.drop_table('session_event')

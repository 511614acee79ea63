"""research: 网络教研 activities (同课异构), their lessons, members and discussion

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 09:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=20)


def upgrade() -> None:
    op.create_table(
        'research_activity',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', _enum('activitykind', 'same_topic', 'observation'), nullable=False),
        sa.Column('title', sa.String(length=100), nullable=False),
        sa.Column('topic', sa.String(length=100), nullable=False),
        sa.Column('subject', sa.String(length=50), nullable=False),
        sa.Column('grade', sa.String(length=50), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('region_id', sa.Integer(), nullable=True),
        sa.Column('organizer_id', sa.Integer(), nullable=False),
        sa.Column('status', _enum('activitystatus', 'open', 'closed'), nullable=False),
        sa.Column('outcome', sa.Text(), nullable=False),
        sa.Column('summary', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('closed_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['region_id'], ['region.id']),
        sa.ForeignKeyConstraint(['organizer_id'], ['user_account.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_research_activity_region_id', 'research_activity', ['region_id'])
    op.create_index('ix_research_activity_organizer_id', 'research_activity', ['organizer_id'])
    op.create_table(
        'research_lesson',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('activity_id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['activity_id'], ['research_activity.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('activity_id', 'instance_id', name='research_lesson_once'),
    )
    op.create_index('ix_research_lesson_instance_id', 'research_lesson', ['instance_id'])
    op.create_table(
        'research_member',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('activity_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('part', _enum('memberpart', 'organizer', 'teacher', 'participant'), nullable=False),
        sa.Column('added_at', sa.DateTime(), nullable=False),
        sa.Column('first_seen_at', sa.DateTime(), nullable=True),
        sa.Column('last_seen_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['activity_id'], ['research_activity.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['user_account.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('activity_id', 'user_id', name='research_member_once'),
    )
    op.create_index('ix_research_member_user_id', 'research_member', ['user_id'])
    op.create_table(
        'research_comment',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('activity_id', sa.Integer(), nullable=False),
        sa.Column('author_id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=True),
        sa.Column('offset_s', sa.Float(), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['activity_id'], ['research_activity.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['author_id'], ['user_account.id']),
        sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('research_comment_activity', 'research_comment', ['activity_id', 'id'])


def downgrade() -> None:
    op.drop_index('research_comment_activity', table_name='research_comment')
    op.drop_table('research_comment')
    op.drop_index('ix_research_member_user_id', table_name='research_member')
    op.drop_table('research_member')
    op.drop_index('ix_research_lesson_instance_id', table_name='research_lesson')
    op.drop_table('research_lesson')
    op.drop_index('ix_research_activity_organizer_id', table_name='research_activity')
    op.drop_index('ix_research_activity_region_id', table_name='research_activity')
    op.drop_table('research_activity')

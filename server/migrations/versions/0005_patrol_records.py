"""patrol records: rubric templates, visits, evaluations with notes, snapshots, replies; invitations

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _enum(*values: str, name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=20)


def upgrade() -> None:
    op.create_table('rubric_template',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], ),
    sa.ForeignKeyConstraint(['created_by_id'], ['user_account.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rubric_template', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rubric_template_region_id'), ['region_id'], unique=False)

    op.create_table('rubric_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('max_score', sa.Float(), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.CheckConstraint('max_score > 0', name='rubric_item_max'),
    sa.CheckConstraint('weight > 0', name='rubric_item_weight'),
    sa.ForeignKeyConstraint(['template_id'], ['rubric_template.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rubric_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rubric_item_template_id'), ['template_id'], unique=False)

    op.create_table('patrol_visit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('researcher_id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('end_reason', _enum('left', 'timeout', 'room_closed', name='visitend'), nullable=True),
    sa.Column('duration_seconds', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id'], ),
    sa.ForeignKeyConstraint(['researcher_id'], ['user_account.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('patrol_visit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patrol_visit_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index('patrol_visit_researcher_start', ['researcher_id', 'started_at'], unique=False)
        batch_op.create_index('patrol_visit_open', ['ended_at', 'last_seen_at'], unique=False)

    op.create_table('evaluation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('evaluator_id', sa.Integer(), nullable=False),
    sa.Column('mode', _enum('live', 'replay', name='evaluationmode'), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=True),
    sa.Column('scores', sa.JSON(), nullable=False),
    sa.Column('total_score', sa.Float(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['evaluator_id'], ['user_account.id'], ),
    sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id'], ),
    sa.ForeignKeyConstraint(['template_id'], ['rubric_template.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('instance_id', 'evaluator_id', name='evaluation_once')
    )
    with op.batch_alter_table('evaluation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evaluation_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_evaluation_evaluator_id'), ['evaluator_id'], unique=False)

    op.create_table('evaluation_note',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('evaluation_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('lesson_offset_seconds', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['evaluation_id'], ['evaluation.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('evaluation_note', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evaluation_note_evaluation_id'), ['evaluation_id'], unique=False)

    op.create_table('evaluation_snapshot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('evaluation_id', sa.Integer(), nullable=False),
    sa.Column('taken_at', sa.DateTime(), nullable=False),
    sa.Column('lesson_offset_seconds', sa.Integer(), nullable=True),
    sa.Column('path', sa.String(length=200), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['evaluation_id'], ['evaluation.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('evaluation_snapshot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evaluation_snapshot_evaluation_id'), ['evaluation_id'], unique=False)

    op.create_table('evaluation_reply',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('evaluation_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['user_account.id'], ),
    sa.ForeignKeyConstraint(['evaluation_id'], ['evaluation.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('evaluation_reply', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evaluation_reply_evaluation_id'), ['evaluation_id'], unique=False)

    op.create_table('evaluator_invitation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('invitee_id', sa.Integer(), nullable=False),
    sa.Column('invited_by_id', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id'], ),
    sa.ForeignKeyConstraint(['invited_by_id'], ['user_account.id'], ),
    sa.ForeignKeyConstraint(['invitee_id'], ['user_account.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('instance_id', 'invitee_id', name='evaluator_invitation_once')
    )
    with op.batch_alter_table('evaluator_invitation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evaluator_invitation_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_evaluator_invitation_invitee_id'), ['invitee_id'], unique=False)


def downgrade() -> None:
    for table in ('evaluator_invitation', 'evaluation_reply', 'evaluation_snapshot', 'evaluation_note',
                  'evaluation', 'patrol_visit', 'rubric_item', 'rubric_template'):
        op.drop_table(table)

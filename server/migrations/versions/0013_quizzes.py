"""quizzes: the quick quiz (随堂测) of a lesson, its questions and answers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 06:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'quiz_question',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.Enum('single', 'multiple', 'true_false', name='quizkind', native_enum=False,
                                  length=20), nullable=False),
        sa.Column('text', sa.String(length=500), nullable=False),
        sa.Column('options', sa.JSON(), nullable=False),
        sa.Column('correct', sa.JSON(), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('opened_at', sa.DateTime(), nullable=True),
        sa.Column('closed_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['instance_id'], ['lesson_instance.id']),
        sa.ForeignKeyConstraint(['created_by'], ['user_account.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_quiz_question_instance_id', 'quiz_question', ['instance_id'])
    op.create_table(
        'quiz_answer',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('question_id', sa.Integer(), nullable=False),
        sa.Column('answerer', sa.String(length=40), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('classroom_id', sa.Integer(), nullable=True),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('choices', sa.JSON(), nullable=False),
        sa.Column('answered_at', sa.DateTime(), nullable=False),
        sa.Column('changes', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['question_id'], ['quiz_question.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['user_account.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('question_id', 'answerer', name='uq_quiz_answer_answerer'),
    )
    op.create_index('ix_quiz_answer_question_id', 'quiz_answer', ['question_id'])


def downgrade() -> None:
    op.drop_index('ix_quiz_answer_question_id', table_name='quiz_answer')
    op.drop_table('quiz_answer')
    op.drop_index('ix_quiz_question_instance_id', table_name='quiz_question')
    op.drop_table('quiz_question')

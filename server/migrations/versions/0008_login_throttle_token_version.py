"""login_throttle, used_join_token, user_account.token_version: login backoff and token revocation

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('user_account', sa.Column('token_version', sa.Integer(), nullable=False, server_default='0'))
    op.create_table(
        'login_throttle',
        sa.Column('key', sa.String(length=100), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_failure_at', sa.DateTime(), nullable=False),
        sa.Column('blocked_until', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_login_throttle_last_failure_at', 'login_throttle', ['last_failure_at'])
    op.create_table(
        'used_join_token',
        sa.Column('jti', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.String(length=64), nullable=True),
        sa.Column('expires_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('jti'),
    )
    op.create_index('ix_used_join_token_expires_at', 'used_join_token', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_used_join_token_expires_at', table_name='used_join_token')
    op.drop_table('used_join_token')
    op.drop_index('ix_login_throttle_last_failure_at', table_name='login_throttle')
    op.drop_table('login_throttle')
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_column('token_version')

"""account registry and generation caps

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('account_id', sa.String(length=128), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('assurance', sa.String(length=32), nullable=True),
    sa.Column('parent_account', sa.String(length=128), nullable=True),
    sa.Column('generation_disabled', sa.Boolean(), nullable=False),
    sa.Column('cameo_use_disabled', sa.Boolean(), nullable=False),
    sa.Column('profile_offset', sa.BigInteger(), nullable=False),
    sa.Column('parental_link_offset', sa.BigInteger(), nullable=False),
    sa.Column('parental_controls_offset', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id')
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_parent_account'), ['parent_account'], unique=False)

    op.create_table('generation_charges',
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('account_id', sa.String(length=128), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('charged_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('request_id')
    )
    with op.batch_alter_table('generation_charges', schema=None) as batch_op:
        batch_op.create_index('ix_generation_charges_account_day', ['account_id', 'day'], unique=False)

    op.create_table('generation_counts',
    sa.Column('account_id', sa.String(length=128), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'day')
    )


def downgrade() -> None:
    op.drop_table('generation_counts')
    with op.batch_alter_table('generation_charges', schema=None) as batch_op:
        batch_op.drop_index('ix_generation_charges_account_day')

    op.drop_table('generation_charges')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_parent_account'))

    op.drop_table('accounts')

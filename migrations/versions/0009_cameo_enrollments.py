"""cameo_enrollments: a cameo's verified reference faces (and voice) enrolled from the consent feed

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cameo_enrollments',
    sa.Column('cameo_id', sa.String(length=128), nullable=False),
    sa.Column('verification_offset', sa.BigInteger(), nullable=False),
    sa.Column('revocation_offset', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('findings', sa.JSON(), nullable=True),
    sa.Column('policy_id', sa.String(length=128), nullable=True),
    sa.Column('policy_version', sa.String(length=64), nullable=True),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('cameo_id')
    )


def downgrade() -> None:
    op.drop_table('cameo_enrollments')

"""reviews (human review and appeals), the original request JSON, retention marker

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('requests') as batch:
        batch.add_column(sa.Column('original', sa.Text(), nullable=True))
        batch.add_column(sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('reviews',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reviewer', sa.String(length=128), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['requests.request_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'stage', 'kind', name='uq_reviews_request_stage_kind')
    )
    op.create_index('ix_reviews_status_created', 'reviews', ['status', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_reviews_status_created', table_name='reviews')
    op.drop_table('reviews')
    with op.batch_alter_table('requests') as batch:
        batch.drop_column('expired_at')
        batch.drop_column('original')

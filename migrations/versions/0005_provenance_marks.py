"""provenance marks: watermark id -> request, signed and source video hashes, manifest label

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('provenance_marks',
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('watermark_id', sa.String(length=32), nullable=False),
    sa.Column('signed_sha256', sa.String(length=64), nullable=False),
    sa.Column('source_sha256', sa.String(length=64), nullable=False),
    sa.Column('manifest_label', sa.String(length=200), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('request_id')
    )
    op.create_index('ix_provenance_marks_watermark_id', 'provenance_marks', ['watermark_id'])
    op.create_index('ix_provenance_marks_signed_sha256', 'provenance_marks', ['signed_sha256'])


def downgrade() -> None:
    op.drop_index('ix_provenance_marks_signed_sha256', table_name='provenance_marks')
    op.drop_index('ix_provenance_marks_watermark_id', table_name='provenance_marks')
    op.drop_table('provenance_marks')

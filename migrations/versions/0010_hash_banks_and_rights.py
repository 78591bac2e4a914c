"""hash banks (known media, taken-down videos, rights holders' references) and the rights registry

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hash_banks',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('distance', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('hash_bank_entries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('bank', sa.String(length=64), nullable=False),
    sa.Column('signal_type', sa.String(length=32), nullable=False),
    sa.Column('hash', sa.String(length=128), nullable=False),
    sa.Column('quality', sa.Integer(), nullable=True),
    sa.Column('content_id', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=300), nullable=False),
    sa.Column('added_by', sa.String(length=128), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['bank'], ['hash_banks.name'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bank', 'signal_type', 'hash', 'content_id', name='uq_hash_bank_entry')
    )
    op.create_index('ix_hash_bank_entries_bank', 'hash_bank_entries', ['bank'])
    op.create_index('ix_hash_bank_entries_content_id', 'hash_bank_entries', ['content_id'])
    op.create_index('ix_hash_bank_entries_signal_type', 'hash_bank_entries', ['signal_type'])
    op.create_table('hash_bank_versions',
    sa.Column('signal_type', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('signal_type')
    )
    op.create_table('rights_works',
    sa.Column('work_id', sa.String(length=128), nullable=False),
    sa.Column('holder_id', sa.String(length=128), nullable=False),
    sa.Column('holder_name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('aliases', sa.JSON(), nullable=False),
    sa.Column('choice', sa.String(length=16), nullable=False),
    sa.Column('reference_media', sa.JSON(), nullable=False),
    sa.Column('references_hashed', sa.Integer(), nullable=False),
    sa.Column('reference_problems', sa.JSON(), nullable=True),
    sa.Column('removed', sa.Boolean(), nullable=False),
    sa.Column('source_offset', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('work_id')
    )
    op.create_index('ix_rights_works_holder_id', 'rights_works', ['holder_id'])


def downgrade() -> None:
    op.drop_index('ix_rights_works_holder_id', table_name='rights_works')
    op.drop_table('rights_works')
    op.drop_table('hash_bank_versions')
    op.drop_index('ix_hash_bank_entries_signal_type', table_name='hash_bank_entries')
    op.drop_index('ix_hash_bank_entries_content_id', table_name='hash_bank_entries')
    op.drop_index('ix_hash_bank_entries_bank', table_name='hash_bank_entries')
    op.drop_table('hash_bank_entries')
    op.drop_table('hash_banks')

"""face galleries

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gallery_identities',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('gallery', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('gallery', 'name', name='uq_gallery_identities_gallery_name')
    )
    op.create_table('gallery_versions',
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('backend')
    )
    op.create_table('gallery_embeddings',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('identity_id', sa.Integer(), nullable=False),
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['identity_id'], ['gallery_identities.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('gallery_embeddings', schema=None) as batch_op:
        batch_op.create_index('ix_gallery_embeddings_backend', ['backend'], unique=False)
        batch_op.create_index(batch_op.f('ix_gallery_embeddings_identity_id'), ['identity_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('gallery_embeddings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gallery_embeddings_identity_id'))
        batch_op.drop_index('ix_gallery_embeddings_backend')

    op.drop_table('gallery_embeddings')
    op.drop_table('gallery_versions')
    op.drop_table('gallery_identities')

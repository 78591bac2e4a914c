"""initial audit schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cameos',
    sa.Column('cameo_id', sa.String(length=128), nullable=False),
    sa.Column('owner_account', sa.String(length=128), nullable=True),
    sa.Column('audience', sa.String(length=16), nullable=True),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verified_by', sa.String(length=128), nullable=True),
    sa.Column('verification_method', sa.String(length=64), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.Text(), nullable=True),
    sa.Column('registration_offset', sa.BigInteger(), nullable=False),
    sa.Column('verification_offset', sa.BigInteger(), nullable=False),
    sa.Column('revocation_offset', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('cameo_id')
    )
    with op.batch_alter_table('cameos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cameos_owner_account'), ['owner_account'], unique=False)

    op.create_table('dead_letters',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('source_topic', sa.String(length=255), nullable=False),
    sa.Column('source_partition', sa.Integer(), nullable=False),
    sa.Column('source_offset', sa.BigInteger(), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('original', sa.LargeBinary(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_topic', 'source_partition', 'source_offset', name='uq_dead_letters_source')
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letters_request_id'), ['request_id'], unique=False)

    op.create_table('requests',
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('requester_account', sa.String(length=128), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('cameo_ids', sa.JSON(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('request_id')
    )
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_requests_requester_account'), ['requester_account'], unique=False)

    op.create_table('cameo_access',
    sa.Column('cameo_id', sa.String(length=128), nullable=False),
    sa.Column('account', sa.String(length=128), nullable=False),
    sa.Column('access', sa.String(length=8), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source_offset', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['cameo_id'], ['cameos.cameo_id'], ),
    sa.PrimaryKeyConstraint('cameo_id', 'account')
    )
    op.create_table('decisions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('policy_id', sa.String(length=128), nullable=False),
    sa.Column('policy_version', sa.String(length=64), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.Column('input_topic', sa.String(length=255), nullable=False),
    sa.Column('input_partition', sa.Integer(), nullable=False),
    sa.Column('input_offset', sa.BigInteger(), nullable=False),
    sa.Column('output_topic', sa.String(length=255), nullable=False),
    sa.Column('output_payload', sa.LargeBinary(), nullable=False),
    sa.Column('worker', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.request_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'stage', name='uq_decisions_request_stage')
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decisions_request_id'), ['request_id'], unique=False)
        batch_op.create_index('ix_decisions_stage_outcome_decided', ['stage', 'outcome', 'decided_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_decisions_stage_outcome_decided')
        batch_op.drop_index(batch_op.f('ix_decisions_request_id'))

    op.drop_table('decisions')
    op.drop_table('cameo_access')
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requests_requester_account'))

    op.drop_table('requests')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letters_request_id'))

    op.drop_table('dead_letters')
    with op.batch_alter_table('cameos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameos_owner_account'))

    op.drop_table('cameos')

"""request_cameos, takedowns, and decision indexes for the audit queries

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('request_cameos',
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('cameo_id', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.request_id'], ),
    sa.PrimaryKeyConstraint('request_id', 'cameo_id')
    )
    op.create_index('ix_request_cameos_cameo_id', 'request_cameos', ['cameo_id'])
    op.create_table('takedowns',
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('cause_event_id', sa.String(length=128), nullable=False),
    sa.Column('reason_code', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.request_id'], ),
    sa.PrimaryKeyConstraint('request_id')
    )
    op.create_index('ix_takedowns_cause_event_id', 'takedowns', ['cause_event_id'])
    op.create_index('ix_decisions_outcome_decided', 'decisions', ['outcome', 'decided_at'])
    op.create_index('ix_decisions_policy_version', 'decisions', ['policy_version'])
    # Requests recorded before this migration: fill request_cameos from the JSON column.
    connection = op.get_bind()
    requests = sa.table('requests', sa.column('request_id', sa.String), sa.column('cameo_ids', sa.JSON))
    rows = [{"request_id": request_id, "cameo_id": cameo_id}
            for request_id, cameo_ids in connection.execute(sa.select(requests.c.request_id, requests.c.cameo_ids))
            for cameo_id in dict.fromkeys(cameo_ids or [])]
    if rows:
        op.bulk_insert(sa.table('request_cameos', sa.column('request_id', sa.String),
                                sa.column('cameo_id', sa.String)), rows)


def downgrade() -> None:
    op.drop_index('ix_decisions_policy_version', table_name='decisions')
    op.drop_index('ix_decisions_outcome_decided', table_name='decisions')
    op.drop_index('ix_takedowns_cause_event_id', table_name='takedowns')
    op.drop_table('takedowns')
    op.drop_index('ix_request_cameos_cameo_id', table_name='request_cameos')
    op.drop_table('request_cameos')

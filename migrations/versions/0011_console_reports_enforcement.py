"""web console reviewers, user reports and report cases, strike voids and standing appeals, staff actions,
escalated reviews, send claims of reviews and takedowns (audit.send_once)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('reviews', sa.Column('escalated_by', sa.String(length=128), nullable=True))
    op.add_column('reviews', sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True))
    for table in ('reviews', 'takedowns'):
        op.add_column(table, sa.Column('send_claimed_at', sa.DateTime(timezone=True), nullable=True))
        op.add_column(table, sa.Column('send_partition', sa.Integer(), nullable=True))
        op.add_column(table, sa.Column('send_after', sa.BigInteger(), nullable=True))
    op.create_table('reviewers',
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('username')
    )
    op.create_table('reports',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('report_id', sa.String(length=128), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('reporter', sa.String(length=128), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.request_id']),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('report_id'),
    sa.UniqueConstraint('request_id', 'reporter', name='uq_reports_request_reporter')
    )
    op.create_index('ix_reports_request_id', 'reports', ['request_id'])
    op.create_table('report_cases',
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('policy_version', sa.String(length=64), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reviewer', sa.String(length=128), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['requests.request_id']),
    sa.PrimaryKeyConstraint('request_id')
    )
    op.create_index('ix_report_cases_status_opened', 'report_cases', ['status', 'opened_at'])
    op.create_table('strike_voids',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('source_ref', sa.String(length=128), nullable=False),
    sa.Column('voided_by', sa.String(length=128), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('voided_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account', 'source', 'source_ref', name='uq_strike_voids_strike')
    )
    op.create_index('ix_strike_voids_account', 'strike_voids', ['account'])
    op.create_table('standing_appeals',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account', sa.String(length=128), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reviewer', sa.String(length=128), nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_standing_appeals_account', 'standing_appeals', ['account'])
    op.create_index('ix_standing_appeals_status_created', 'standing_appeals', ['status', 'created_at'])
    op.create_table('staff_actions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_staff_actions_actor', 'staff_actions', ['actor'])
    op.create_index('ix_staff_actions_target', 'staff_actions', ['target'])


def downgrade() -> None:
    for index, table in [('ix_staff_actions_target', 'staff_actions'), ('ix_staff_actions_actor', 'staff_actions')]:
        op.drop_index(index, table_name=table)
    op.drop_table('staff_actions')
    op.drop_index('ix_standing_appeals_status_created', table_name='standing_appeals')
    op.drop_index('ix_standing_appeals_account', table_name='standing_appeals')
    op.drop_table('standing_appeals')
    op.drop_index('ix_strike_voids_account', table_name='strike_voids')
    op.drop_table('strike_voids')
    op.drop_index('ix_report_cases_status_opened', table_name='report_cases')
    op.drop_table('report_cases')
    op.drop_index('ix_reports_request_id', table_name='reports')
    op.drop_table('reports')
    op.drop_table('reviewers')
    for table in ('reviews', 'takedowns'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('send_after')
            batch.drop_column('send_partition')
            batch.drop_column('send_claimed_at')
    with op.batch_alter_table('reviews') as batch:
        batch.drop_column('escalated_at')
        batch.drop_column('escalated_by')

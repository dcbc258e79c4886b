"""Dashboard rollups and settings; members' optional birth year

Revision ID: 0008
Revises: 0009
Create Date: 2026-11-30 23:00:00

- dashboard_member_days / _member_months / _member_hours: each member's counted actions
  per type per day, month, and month x weekday x hour (scheme time zone), with km and
  hours from the actions' attributes. Derived data:
  `rewards dashboard rebuild` makes them again from the actions.
- dashboard_ledger_days: points moved per scheme account and posting kind per day.
- dashboard_refreshes: when the rollups were last brought up to date.
- dashboard_settings: staff settings for the figures (value per point, impact factors,
  ward population and deprivation decile), each change audited.
- members.birth_year: optional; shown only as an age band in aggregates.
- indexes the refresh reads by: actions by occurred_at and created_at, revoked awards.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rewards.models.base

revision = '0008'
down_revision = '0009'
branch_labels = None
depends_on = None

UTC_DATETIME = rewards.models.base.UTCDateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        'dashboard_member_days',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('type_code', sa.String(64), nullable=False),
        sa.Column('category', sa.String(32), nullable=False),
        sa.Column('ward', sa.String(100), nullable=False),
        sa.Column('actions', sa.Integer(), nullable=False),
        sa.Column('points', sa.BigInteger(), nullable=False),
        sa.Column('km', sa.Float(), nullable=False),
        sa.Column('duration_h', sa.Float(), nullable=False),
        sa.Column('by_hour', JSON, nullable=False),
        sa.PrimaryKeyConstraint('day', 'member_id', 'type_code',
                                name=op.f('pk_dashboard_member_days')),
    )
    op.create_index('ix_dashboard_member_days_member_day', 'dashboard_member_days',
                    ['member_id', 'day'])
    op.create_table(
        'dashboard_member_months',
        sa.Column('month', sa.Date(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('type_code', sa.String(64), nullable=False),
        sa.Column('category', sa.String(32), nullable=False),
        sa.Column('ward', sa.String(100), nullable=False),
        sa.Column('actions', sa.Integer(), nullable=False),
        sa.Column('points', sa.BigInteger(), nullable=False),
        sa.Column('km', sa.Float(), nullable=False),
        sa.Column('duration_h', sa.Float(), nullable=False),
        sa.Column('days', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('month', 'member_id', 'type_code',
                                name=op.f('pk_dashboard_member_months')),
    )
    op.create_index('ix_dashboard_member_months_member', 'dashboard_member_months',
                    ['member_id', 'month'])
    op.create_table(
        'dashboard_member_hours',
        sa.Column('month', sa.Date(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('type_code', sa.String(64), nullable=False),
        sa.Column('weekday', sa.Integer(), nullable=False),
        sa.Column('hour', sa.Integer(), nullable=False),
        sa.Column('category', sa.String(32), nullable=False),
        sa.Column('ward', sa.String(100), nullable=False),
        sa.Column('actions', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('month', 'member_id', 'type_code', 'weekday', 'hour',
                                name=op.f('pk_dashboard_member_hours')),
    )
    op.create_index('ix_dashboard_member_hours_member', 'dashboard_member_hours',
                    ['member_id', 'month'])
    op.create_table(
        'dashboard_ledger_days',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('account', sa.String(80), nullable=False),
        sa.Column('kind', sa.String(32), nullable=False),
        sa.Column('points', sa.BigInteger(), nullable=False),
        sa.Column('postings', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'account', 'kind', name=op.f('pk_dashboard_ledger_days')),
    )
    op.create_table(
        'dashboard_refreshes',
        sa.Column('name', sa.String(32), nullable=False),
        sa.Column('refreshed_at', UTC_DATETIME, nullable=False),
        sa.Column('took_ms', sa.Integer(), nullable=False),
        sa.Column('days', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_dashboard_refreshes')),
    )
    op.create_table(
        'dashboard_settings',
        sa.Column('key', sa.String(160), nullable=False),
        sa.Column('value', JSON, nullable=False),
        sa.Column('updated_at', UTC_DATETIME, nullable=False),
        sa.Column('updated_by', sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_dashboard_settings')),
    )
    op.add_column('members', sa.Column('birth_year', sa.Integer(), nullable=True))
    op.create_index('ix_actions_occurred_at', 'actions', ['occurred_at'])
    op.create_index('ix_actions_created_at', 'actions', ['created_at'])
    op.create_index('ix_awards_revoked_at', 'awards', ['revoked_at'],
                    postgresql_where=sa.text('revoked_at IS NOT NULL'),
                    sqlite_where=sa.text('revoked_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_awards_revoked_at', table_name='awards')
    op.drop_index('ix_actions_created_at', table_name='actions')
    op.drop_index('ix_actions_occurred_at', table_name='actions')
    with op.batch_alter_table('members') as batch:
        batch.drop_column('birth_year')
    op.drop_table('dashboard_settings')
    op.drop_table('dashboard_refreshes')
    op.drop_table('dashboard_ledger_days')
    op.drop_index('ix_dashboard_member_hours_member', table_name='dashboard_member_hours')
    op.drop_table('dashboard_member_hours')
    op.drop_index('ix_dashboard_member_months_member', table_name='dashboard_member_months')
    op.drop_table('dashboard_member_months')
    op.drop_index('ix_dashboard_member_days_member_day', table_name='dashboard_member_days')
    op.drop_table('dashboard_member_days')

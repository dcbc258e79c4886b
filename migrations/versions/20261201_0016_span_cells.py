"""Dashboard: span and sum cells, so distinct members over any months are one sum

Revision ID: 0016
Revises: 0019
Create Date: 2026-12-01 02:00:00

- dashboard_span_cells: members counted once per cell, by ward, birth year, weekday and
  hour, cohort, week or day, per action type, category or any; each member's active
  periods with the next one, so the members over a range of periods add up.
- dashboard_sum_cells: counted actions, points, km and hours per period and type.
- dashboard_join_days: members who joined per day, ward and channel.
Derived data: `rewards dashboard rebuild` makes them again.
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dashboard_span_cells',
        sa.Column('dim', sa.String(8), nullable=False),
        sa.Column('type_code', sa.String(64), nullable=False),
        sa.Column('category', sa.String(32), nullable=False),
        sa.Column('ward', sa.String(100), nullable=False),
        sa.Column('value', sa.String(32), nullable=False),
        sa.Column('first_period', sa.Date(), nullable=False),
        sa.Column('next_period', sa.Date(), nullable=False),
        sa.Column('members', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('dim', 'type_code', 'category', 'ward', 'value',
                                'first_period', 'next_period',
                                name=op.f('pk_dashboard_span_cells')),
    )
    op.create_table(
        'dashboard_sum_cells',
        sa.Column('dim', sa.String(8), nullable=False),
        sa.Column('period', sa.Date(), nullable=False),
        sa.Column('type_code', sa.String(64), nullable=False),
        sa.Column('category', sa.String(32), nullable=False),
        sa.Column('ward', sa.String(100), nullable=False),
        sa.Column('value', sa.String(32), nullable=False),
        sa.Column('actions', sa.Integer(), nullable=False),
        sa.Column('points', sa.BigInteger(), nullable=False),
        sa.Column('km', sa.Float(), nullable=False),
        sa.Column('duration_h', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('dim', 'period', 'type_code', 'category', 'ward', 'value',
                                name=op.f('pk_dashboard_sum_cells')),
    )
    op.create_table(
        'dashboard_join_days',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('ward', sa.String(100), nullable=False),
        sa.Column('desk', sa.Boolean(), nullable=False),
        sa.Column('members', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'ward', 'desk', name=op.f('pk_dashboard_join_days')),
    )


def downgrade() -> None:
    op.drop_table('dashboard_join_days')
    op.drop_table('dashboard_sum_cells')
    op.drop_table('dashboard_span_cells')

"""Dashboard: pre-aggregated tenure cells for the baseline figure

Revision ID: 0015
Revises: 0011
Create Date: 2026-12-01 00:30:00

- dashboard_member_tenure: each member's counted actions per type per window of their
  membership (weeks 1-4, months 2-3, 4-6, later), with their cohort month and ward.
- dashboard_tenure_cells: the same summed per cohort month x ward x type x window, with
  the number of members in each cell. The baseline figure reads only these.
Derived data: `rewards dashboard rebuild` makes them again.
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dashboard_member_tenure',
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('type_code', sa.String(64), nullable=False),
        sa.Column('window', sa.String(16), nullable=False),
        sa.Column('cohort', sa.Date(), nullable=False),
        sa.Column('category', sa.String(32), nullable=False),
        sa.Column('ward', sa.String(100), nullable=False),
        sa.Column('actions', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('member_id', 'type_code', 'window',
                                name=op.f('pk_dashboard_member_tenure')),
    )
    op.create_table(
        'dashboard_tenure_cells',
        sa.Column('cohort', sa.Date(), nullable=False),
        sa.Column('ward', sa.String(100), nullable=False),
        sa.Column('type_code', sa.String(64), nullable=False),
        sa.Column('category', sa.String(32), nullable=False),
        sa.Column('window', sa.String(16), nullable=False),
        sa.Column('members', sa.Integer(), nullable=False),
        sa.Column('actions', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('cohort', 'ward', 'type_code', 'category', 'window',
                                name=op.f('pk_dashboard_tenure_cells')),
    )


def downgrade() -> None:
    op.drop_table('dashboard_tenure_cells')
    op.drop_table('dashboard_member_tenure')

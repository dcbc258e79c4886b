"""Dashboard: earned points by the day they expire; redemptions by when, not undone

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 09:00:00

- dashboard_expiry_days: earn postings' credits summed by posting day and expiry day
  (scheme time zone), kept with the ledger days. The forecast figure reads these
  instead of every earn line of the ledger. Derived data: the first refresh after this
  migration fills it for the whole history; `rewards dashboard rebuild` makes it again.
- ix_redemptions_created: redemptions not undone, by created_at. The forecast's last 90
  days and a period's amounts owed to partners read a range of them; the only index by
  created_at led with the partner, so both read every redemption ever made.
"""
from alembic import op
import sqlalchemy as sa

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

STANDING = 'undone_at IS NULL'


def upgrade() -> None:
    op.create_table(
        'dashboard_expiry_days',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('expires', sa.Date(), nullable=False),
        sa.Column('points', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'expires', name=op.f('pk_dashboard_expiry_days')),
    )
    op.create_index('ix_dashboard_expiry_days_expires', 'dashboard_expiry_days', ['expires'])
    op.create_index('ix_redemptions_created', 'redemptions', ['created_at'],
                    postgresql_where=sa.text(STANDING), sqlite_where=sa.text(STANDING))


def downgrade() -> None:
    op.drop_index('ix_redemptions_created', table_name='redemptions')
    op.drop_index('ix_dashboard_expiry_days_expires', table_name='dashboard_expiry_days')
    op.drop_table('dashboard_expiry_days')

"""Resident reads: an index for finding an action's postings

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-30 23:00:00

- ix_postings_action_id: an action's postings (its earn postings, its reversal). Without
  it, reversing one action, and releasing pending points (which skips credits whose
  action was reversed), read every posting of the scheme: `rewards ledger release` took
  25-29 s on the demo's SQLite.
"""

from alembic import op

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_postings_action_id', 'postings', ['action_id'])


def downgrade() -> None:
    op.drop_index('ix_postings_action_id', table_name='postings')

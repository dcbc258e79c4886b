"""Indexes that skip the rows they never find

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02 00:10:00

- ix_postings_action_id, ix_postings_available_at, ix_postings_expires_at: partial, over
  postings where the column is set. Every query through them asks for a value (an
  action's postings, credits due by a moment, lots past their expiry), which no NULL
  matches; holds, spends, refunds and releases carry none of the three, so a claim no
  longer writes three index entries nobody reads.
- ix_outbox_dispatched_at: dropped. No query reads the outbox by when a row was handed
  over (the relay reads `due_at`), and every row written and every hand-over updated it.
"""
from alembic import op
import sqlalchemy as sa

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None

PARTIAL = ('action_id', 'available_at', 'expires_at')


def upgrade() -> None:
    for column in PARTIAL:
        op.drop_index(f'ix_postings_{column}', table_name='postings')
        where = sa.text(f'{column} IS NOT NULL')
        op.create_index(f'ix_postings_{column}', 'postings', [column],
                        postgresql_where=where, sqlite_where=where)
    op.drop_index('ix_outbox_dispatched_at', table_name='outbox')


def downgrade() -> None:
    op.create_index('ix_outbox_dispatched_at', 'outbox', ['dispatched_at'])
    for column in PARTIAL:
        op.drop_index(f'ix_postings_{column}', table_name='postings')
        op.create_index(f'ix_postings_{column}', 'postings', [column])

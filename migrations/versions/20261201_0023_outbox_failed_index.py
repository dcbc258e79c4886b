"""Outbox jobs that gave up, by when; the request that wrote each job

Revision ID: 0023
Revises: 0020
Create Date: 2026-12-01 06:15:00

- ix_outbox_failed_done_at: a partial index on outbox.done_at over rows done with an
  error (a job that spent every attempt, or was abandoned), so /metrics counts the last
  hour's failures without reading a week of finished jobs at every scrape.
- outbox.request_id: the request (or job) that wrote the row, so every attempt logs
  under it, also one the relay sends again after Redis lost the first.
"""
from alembic import op
import sqlalchemy as sa

revision = '0023'
down_revision = '0020'
branch_labels = None
depends_on = None

FAILED = 'due_at IS NULL AND last_error IS NOT NULL'


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('request_id', sa.String(length=128), nullable=True))
    # Rows done before this release may keep an error after a later attempt succeeded;
    # /metrics counts the last hour's, so they stop mattering within the hour.
    op.create_index('ix_outbox_failed_done_at', 'outbox', ['done_at'],
                    postgresql_where=sa.text(FAILED), sqlite_where=sa.text(FAILED))


def downgrade() -> None:
    op.drop_index('ix_outbox_failed_done_at', table_name='outbox')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('request_id')

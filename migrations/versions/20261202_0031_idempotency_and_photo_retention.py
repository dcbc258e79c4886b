"""Retention for stored idempotent answers and decided self-reports' photos

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-02 11:00:00

A self-report's photo was kept until the resident's erasure, long after the reviewer
had decided on it. The nightly retention run now deletes it
SELF_REPORT_PHOTO_RETENTION_DAYS after the decision; the report keeps when that
happened and the period then in force, so the review and the export say so.

Stored answers to Idempotency-Key retries were never deleted; the same run now deletes
those older than IDEMPOTENCY_RETENTION_DAYS, in batches found by their creation time
(the new index, so a large table is not read whole each night).
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0031'
down_revision = '0030'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_idempotency_keys_created_at', 'idempotency_keys', ['created_at'])
    with op.batch_alter_table('self_reports') as batch:
        batch.add_column(sa.Column('photo_removed_at',
                                   rewards.models.base.UTCDateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column('photo_removed_after_days', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('self_reports') as batch:
        batch.drop_column('photo_removed_after_days')
        batch.drop_column('photo_removed_at')
    op.drop_index('ix_idempotency_keys_created_at', table_name='idempotency_keys')

"""Outbox records completion, not hand-over

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-30 23:00:00

- outbox.due_at: when the relay should send the job (again): set when the row is
  written, pushed forward while the job waits in the queue or runs (its lease), set to
  the next retry's moment when an attempt fails; NULL once the job is done. The relay
  sends every row whose due_at has passed, so a job lost with Redis, or abandoned by a
  killed worker, runs again.
- outbox.done_at: when the job finished (succeeded, or gave up after its last attempt).

Rows handed over before this revision are taken as done (their jobs ran long ago);
rows never handed over are due at once.
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0009'
down_revision = '0006'
branch_labels = None
depends_on = None

UTC_DATETIME = rewards.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('due_at', UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column('done_at', UTC_DATETIME, nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_due_at'), ['due_at'], unique=False)
    op.execute("UPDATE outbox SET done_at = dispatched_at WHERE dispatched_at IS NOT NULL")
    op.execute("UPDATE outbox SET due_at = created_at WHERE dispatched_at IS NULL")


def downgrade() -> None:
    # Rows not done go back to "not dispatched", so the old relay sends them.
    op.execute("UPDATE outbox SET dispatched_at = NULL WHERE done_at IS NULL")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_due_at'))
        batch_op.drop_column('done_at')
        batch_op.drop_column('due_at')

"""Deferred awarding: the queue of batches waiting to be awarded

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 02:00:00

- award_queue: one row per batch of actions recorded `pending` (AWARDING=deferred),
  with the batch's action ids; the worker that awards the batch deletes its row in the
  same transaction. Actions gain no column: "pending" is a new value of their status.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'award_queue',
        sa.Column('action_ids', sa.JSON().with_variant(
            postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_award_queue')),
    )
    op.create_index('ix_award_queue_created_at', 'award_queue', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_award_queue_created_at', table_name='award_queue')
    op.drop_table('award_queue')

"""ledger lots: when a credit becomes spendable and when it expires

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 05:49:22.059903
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, no copy of the ledger's largest table (origin_id has no foreign
    # key for that reason: SQLite could neither add nor drop one without a copy).
    op.add_column('postings', sa.Column('available_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True))
    op.add_column('postings', sa.Column('expires_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True))
    op.add_column('postings', sa.Column('origin_id', sa.Uuid(), nullable=True))
    op.create_index(op.f('ix_postings_available_at'), 'postings', ['available_at'], unique=False)
    op.create_index(op.f('ix_postings_expires_at'), 'postings', ['expires_at'], unique=False)
    op.create_index(op.f('ix_postings_origin_id'), 'postings', ['origin_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_postings_origin_id'), table_name='postings')
    op.drop_index(op.f('ix_postings_expires_at'), table_name='postings')
    op.drop_index(op.f('ix_postings_available_at'), table_name='postings')
    op.drop_column('postings', 'origin_id')
    op.drop_column('postings', 'expires_at')
    op.drop_column('postings', 'available_at')

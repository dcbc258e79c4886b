"""When a member's ward last changed

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-02 00:30:00

- members.ward_changed_at: set when the member changes their ward (PATCH /v1/me). A
  ward unlocks ward-only offers and ward rules, so where the scheme sets
  WARD_CHANGE_DAYS it changes at most once in that many days; without it a resident
  can move to a ward, claim its offer and move back. Existing members have none: their next change is allowed.
"""
from alembic import op
import sqlalchemy as sa

import rewards.models.base

revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('members') as batch:
        batch.add_column(sa.Column('ward_changed_at',
                                   rewards.models.base.UTCDateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('members') as batch:
        batch.drop_column('ward_changed_at')

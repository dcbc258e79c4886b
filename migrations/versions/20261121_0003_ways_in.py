"""Ways in: source keys, events and claim codes, self-reports and reviews, assisted members

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 06:20:00
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

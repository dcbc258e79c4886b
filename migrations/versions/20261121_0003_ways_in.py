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
    with op.batch_alter_table('members') as batch:
        batch.add_column(sa.Column('postcode_district', sa.String(length=8), nullable=True))
        batch.add_column(sa.Column('pin_hash', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('pin_failures', sa.Integer(), nullable=False,
                                   server_default='0'))
        batch.add_column(sa.Column('pin_locked_until',
                                   rewards.models.base.UTCDateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column('enrolled_by', sa.Uuid(), nullable=True))
    with op.batch_alter_table('members') as batch:
        batch.alter_column('pin_failures', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('members') as batch:
        batch.drop_column('enrolled_by')
        batch.drop_column('pin_locked_until')
        batch.drop_column('pin_failures')
        batch.drop_column('pin_hash')
        batch.drop_column('postcode_district')

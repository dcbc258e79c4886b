"""A partner's previous webhook secret, kept for an overlap after a rotation

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-02 10:00:00

Rotating a partner's webhook secret replaced it at once, so every fulfilment request
sent before the partner's system took the new secret was refused there (a 401 that
fails the reward). The secret it replaces is now kept until `previous_webhook_secret_until`
and fulfilment requests carry a signature under each (two v1= entries) until then.
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0030'
down_revision = '0029'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('partners') as batch:
        batch.add_column(sa.Column('previous_webhook_secret', sa.String(length=128),
                                   nullable=True))
        batch.add_column(sa.Column('previous_webhook_secret_until',
                                   rewards.models.base.UTCDateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('partners') as batch:
        batch.drop_column('previous_webhook_secret_until')
        batch.drop_column('previous_webhook_secret')

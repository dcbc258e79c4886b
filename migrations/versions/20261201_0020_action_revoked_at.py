"""When an action was revoked

Revision ID: 0020
Revises: 0016
Create Date: 2026-12-01 03:50:00

- actions.revoked_at: set by a reversal. An action that had earned nothing leaves no
  posting and no award when it is revoked, so without it the dashboard's refresh could
  not see that its day changed.
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0020'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('actions') as batch:
        batch.add_column(sa.Column('revoked_at', rewards.models.base.UTCDateTime(timezone=True),
                                   nullable=True))
    op.create_index('ix_actions_revoked_at', 'actions', ['revoked_at'],
                    postgresql_where=sa.text('revoked_at IS NOT NULL'),
                    sqlite_where=sa.text('revoked_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_actions_revoked_at', table_name='actions')
    with op.batch_alter_table('actions') as batch:
        batch.drop_column('revoked_at')

"""Rules' names in other languages

Revision ID: 0018
Revises: 0014
Create Date: 2026-12-01 02:00:00

- rules.translations: {"cy": {"name": ..}}, the rule's name as members read it on their
  statement and actions in another language (the name itself is English). It belongs
  to the rule, not to a version: translating a name changes no award.
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0018'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rules') as batch:
        batch.add_column(sa.Column('translations', rewards.models.base.JSONType,
                                   nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table('rules') as batch:
        batch.drop_column('translations')

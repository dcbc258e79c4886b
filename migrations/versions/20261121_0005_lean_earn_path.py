"""Lean earn path: running rule totals, revoked awards, fewer per-row checks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 08:10:00

- rules.points_awarded: points awarded under each rule (all versions), less those of
  revoked actions, kept by every award and reversal; a budget is checked against it
  instead of summing the rule's whole history. `rewards ledger verify` proves it equal
  to the awards.
- awards.revoked_at: set when the action is revoked; such awards stop counting against
  caps and budgets.
- Foreign keys nothing needs on the write path: awards.member_id and awards.rule_id
  (the action and the rule version already name both) and postings.member_id (the
  lines' accounts do). Each cost a lookup for every row an action writes.
- ix_postings_origin_id only over the postings that carry one.
- Earn postings made before postings carried available_at get it (created_at plus the
  rule's hold_days), so readers need not join the awards to find it.
"""
from datetime import timedelta

from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

UTC_DATETIME = rewards.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.add_column('rules', sa.Column('points_awarded', sa.BigInteger(), nullable=False,
                                     server_default='0'))
    op.add_column('awards', sa.Column('revoked_at', UTC_DATETIME, nullable=True))
    bind = op.get_bind()
    bind.execute(sa.text(
        "UPDATE awards SET revoked_at = CURRENT_TIMESTAMP WHERE action_id IN "
        "(SELECT id FROM actions WHERE status = 'revoked')"))
    bind.execute(sa.text(
        "UPDATE rules SET points_awarded = (SELECT coalesce(sum(a.points), 0) FROM awards AS a "
        "WHERE a.rule_id = rules.id AND a.revoked_at IS NULL)"))
    _backfill_available_at(bind)

    with op.batch_alter_table('awards') as batch:
        batch.drop_constraint('fk_awards_member_id_members', type_='foreignkey')
        batch.drop_constraint('fk_awards_rule_id_rules', type_='foreignkey')
    with op.batch_alter_table('postings') as batch:
        batch.drop_constraint('fk_postings_member_id_members', type_='foreignkey')
    op.drop_index('ix_postings_origin_id', table_name='postings')
    op.create_index('ix_postings_origin_id', 'postings', ['origin_id'], unique=False,
                    postgresql_where=sa.text('origin_id IS NOT NULL'),
                    sqlite_where=sa.text('origin_id IS NOT NULL'))


def _backfill_available_at(bind: sa.engine.Connection) -> None:
    postings = sa.table('postings', sa.column('id', sa.Uuid()), sa.column('kind', sa.String()),
                        sa.column('created_at', UTC_DATETIME),
                        sa.column('available_at', UTC_DATETIME))
    awards = sa.table('awards', sa.column('posting_id', sa.Uuid()),
                      sa.column('rule_version_id', sa.Uuid()))
    versions = sa.table('rule_versions', sa.column('id', sa.Uuid()),
                        sa.column('hold_days', sa.Integer()))
    rows = bind.execute(
        sa.select(postings.c.id, postings.c.created_at,
                  sa.func.max(sa.func.coalesce(versions.c.hold_days, 0)))
        .select_from(postings)
        .outerjoin(awards, awards.c.posting_id == postings.c.id)
        .outerjoin(versions, versions.c.id == awards.c.rule_version_id)
        .where(postings.c.kind == 'earn', postings.c.available_at.is_(None))
        .group_by(postings.c.id, postings.c.created_at)
    ).fetchall()
    for posting_id, created_at, hold_days in rows:
        bind.execute(postings.update().where(postings.c.id == posting_id)
                     .values(available_at=created_at + timedelta(days=int(hold_days or 0))))


def downgrade() -> None:
    op.drop_index('ix_postings_origin_id', table_name='postings')
    op.create_index('ix_postings_origin_id', 'postings', ['origin_id'], unique=False)
    with op.batch_alter_table('postings') as batch:
        batch.create_foreign_key('fk_postings_member_id_members', 'members',
                                 ['member_id'], ['id'])
    with op.batch_alter_table('awards') as batch:
        batch.create_foreign_key('fk_awards_rule_id_rules', 'rules', ['rule_id'], ['id'])
        batch.create_foreign_key('fk_awards_member_id_members', 'members',
                                 ['member_id'], ['id'])
        batch.drop_column('revoked_at')
    with op.batch_alter_table('rules') as batch:
        batch.drop_column('points_awarded')

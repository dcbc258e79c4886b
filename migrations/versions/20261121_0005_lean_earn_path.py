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
- awards.points_written_off: of a revoked award, the points the member had spent
  already (written off by the reversal): the scheme paid them, so they stay spent from
  the rule's budget.
- ix_postings_origin_id only over the postings that carry one.
- Earn postings made before postings carried available_at get it (created_at plus the
  rule's hold_days), so readers need not join the awards to find it.

From here on one earn posting may carry several awards (one per action and hold), and
downgrading does not split them: code from before 0005 must not run on a database that
has been at 0005 (stop every writer, then migrate, then start the new code).
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
    op.add_column('awards', sa.Column('points_written_off', sa.Integer(), nullable=False,
                                      server_default='0'))
    bind = op.get_bind()
    bind.execute(sa.text(
        "UPDATE awards SET revoked_at = CURRENT_TIMESTAMP WHERE action_id IN "
        "(SELECT id FROM actions WHERE status = 'revoked')"))
    _backfill_written_off(bind)
    bind.execute(sa.text(
        "UPDATE rules SET points_awarded = (SELECT coalesce(sum(CASE WHEN a.revoked_at IS NULL "
        "THEN a.points ELSE a.points_written_off END), 0) FROM awards AS a "
        "WHERE a.rule_id = rules.id)"))
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


def _backfill_written_off(bind: sa.engine.Connection) -> None:
    """Each revoked action's written-off points (its reversal posting's line on
    scheme:written_off), set against its awards in rule id order, as reversals do."""
    awards = sa.table('awards', sa.column('id', sa.Uuid()), sa.column('action_id', sa.Uuid()),
                      sa.column('rule_id', sa.Uuid()), sa.column('points', sa.Integer()),
                      sa.column('points_written_off', sa.Integer()),
                      sa.column('revoked_at', UTC_DATETIME))
    postings = sa.table('postings', sa.column('id', sa.Uuid()), sa.column('action_id', sa.Uuid()),
                        sa.column('kind', sa.String()))
    lines = sa.table('posting_lines', sa.column('posting_id', sa.Uuid()),
                     sa.column('account_id', sa.Uuid()), sa.column('points', sa.BigInteger()))
    accounts = sa.table('accounts', sa.column('id', sa.Uuid()), sa.column('code', sa.String()))
    written = bind.execute(
        sa.select(postings.c.action_id, -sa.func.sum(lines.c.points))
        .select_from(postings.join(lines, lines.c.posting_id == postings.c.id)
                     .join(accounts, accounts.c.id == lines.c.account_id))
        .where(postings.c.kind == 'reversal', accounts.c.code == 'scheme:written_off')
        .group_by(postings.c.action_id)
    ).fetchall()
    for action_id, amount in written:
        left = int(amount or 0)
        rows = bind.execute(
            sa.select(awards.c.id, awards.c.rule_id, awards.c.points)
            .where(awards.c.action_id == action_id, awards.c.points > 0,
                   awards.c.revoked_at.is_not(None))
        ).fetchall()
        for award_id, _, points in sorted(rows, key=lambda row: row[1]):
            kept = min(int(points), left)
            left -= kept
            if kept:
                bind.execute(awards.update().where(awards.c.id == award_id)
                             .values(points_written_off=kept))


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
        batch.drop_column('points_written_off')
    with op.batch_alter_table('rules') as batch:
        batch.drop_column('points_awarded')

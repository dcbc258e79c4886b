"""Members' running totals, kept by the database as ledger lines are written

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01 13:30:00

- member_totals: per member, the sum of the lines of their available and pending
  accounts and the points awards issued to them (less what reversals took back), so a
  balance reads one row instead of every line of the member's history.
- A trigger on posting_lines adds each new line to it in the same transaction, whoever
  writes the line (a claim, an award, a bulk insert, a migration): on PostgreSQL once
  per statement from the statement's new rows, in member order (concurrent statements
  lock the rows they change in one order), on SQLite once per row.
- Scheme accounts are not totalled: every award moves scheme:issuance, and one row
  changed by every award would make all awards wait on each other.
- ix_postings_member_lots: a member's credits by expiry (read backwards), so what is left
  of their lots is read from the newest end and the read stops at the balance.
- Existing lines are summed into the table; `rewards ledger verify` checks it.
"""
from alembic import op
import sqlalchemy as sa

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None

LOT_KINDS = "kind IN ('earn', 'pending_release', 'adjustment')"

# What a set of new lines adds to members' totals, from `new_lines`.
ADDED = """
    SELECT member_id, sum(available) AS available, sum(pending) AS pending,
           sum(issued) AS issued
    FROM (
        SELECT a.member_id,
               CASE WHEN a.kind = 'available' THEN n.points ELSE 0 END AS available,
               CASE WHEN a.kind = 'pending' THEN n.points ELSE 0 END AS pending,
               0 AS issued
        FROM new_lines AS n JOIN accounts AS a ON a.id = n.account_id
        WHERE a.member_id IS NOT NULL
        UNION ALL
        SELECT p.member_id, 0, 0, -n.points
        FROM new_lines AS n
        JOIN accounts AS a ON a.id = n.account_id AND a.code = 'scheme:issuance'
        JOIN postings AS p ON p.id = n.posting_id
        WHERE p.kind IN ('earn', 'reversal') AND p.member_id IS NOT NULL
    ) AS moved
    GROUP BY member_id
"""

UPSERT = """
    ON CONFLICT (member_id) DO UPDATE SET
        available = member_totals.available + excluded.available,
        pending = member_totals.pending + excluded.pending,
        issued = member_totals.issued + excluded.issued
"""

POSTGRES_FUNCTION = f"""
CREATE FUNCTION member_totals_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO member_totals (member_id, available, pending, issued)
    {ADDED} ORDER BY member_id
    {UPSERT};
    RETURN NULL;
END $$
"""

POSTGRES_TRIGGER = """
CREATE TRIGGER posting_lines_member_totals AFTER INSERT ON posting_lines
REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION member_totals_add()
"""

# SQLite has no statement triggers: the same sums from the one new row. "WHERE true"
# tells its parser the ON CONFLICT belongs to the INSERT, not to a join.
SQLITE_TRIGGER = f"""
CREATE TRIGGER posting_lines_member_totals AFTER INSERT ON posting_lines
BEGIN
    INSERT INTO member_totals (member_id, available, pending, issued)
    SELECT * FROM ({ADDED.replace('new_lines AS n', '(SELECT NEW.account_id AS account_id, NEW.posting_id AS posting_id, NEW.points AS points) AS n')}) WHERE true
    {UPSERT};
END
"""

BACKFILL = f"""
INSERT INTO member_totals (member_id, available, pending, issued)
{ADDED.replace('new_lines AS n', 'posting_lines AS n')}
"""


def upgrade() -> None:
    op.create_table(
        'member_totals',
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('available', sa.BigInteger(), nullable=False),
        sa.Column('pending', sa.BigInteger(), nullable=False),
        sa.Column('issued', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('member_id', name=op.f('pk_member_totals')),
    )
    op.create_index('ix_postings_member_lots', 'postings',
                    ['member_id', 'expires_at'],
                    postgresql_where=sa.text(LOT_KINDS), sqlite_where=sa.text(LOT_KINDS))
    op.execute(BACKFILL)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute('DROP TRIGGER IF EXISTS posting_lines_member_totals'
               + (' ON posting_lines' if op.get_bind().dialect.name == 'postgresql' else ''))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS member_totals_add()')
    op.drop_index('ix_postings_member_lots', table_name='postings')
    op.drop_table('member_totals')

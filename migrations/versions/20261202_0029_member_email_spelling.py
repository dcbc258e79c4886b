"""Members' addresses in the one spelling logins look them up under

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-02 07:40:00

Logins now keep and look up an address lower case, with compatibility forms folded
(NFKC) and an internationalised domain in punycode (rewards/members.py
`normalise_email`). An address stored before in another spelling (fullwidth letters,
a Unicode domain) would no longer be found at its owner's next login, which would then
open a new, empty account: it is rewritten here. Only addresses with a character
outside ASCII can change. One whose new spelling another member has already (the same
mailbox joined twice) or that would not fit the column is left as it is. Downgrading
keeps the new spellings: the old ones are not known any more, and the old code looked
addresses up lower case, which these are.
"""
import unicodedata

from alembic import op
import sqlalchemy as sa

revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None


def _spelling(email: str) -> str:
    # rewards.members.normalise_email as of this revision (a migration keeps its own copy).
    email = unicodedata.normalize("NFKC", email).strip().lower()
    local, at, domain = email.rpartition("@")
    if at and domain and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii").lower()
        except UnicodeError:
            pass
    return f"{local}{at}{domain}" if at else email


def upgrade() -> None:
    connection = op.get_bind()
    members = sa.table("members", sa.column("id"), sa.column("email", sa.String))
    # Only an address with a character outside ASCII can change; the rest are already
    # lower case (the old code kept them so) and are never read into memory.
    rows = connection.execute(sa.select(members.c.id, members.c.email).where(
        members.c.email.is_not(None))).yield_per(1000)
    changes = [(member_id, _spelling(email)) for member_id, email in rows
               if not email.isascii() and _spelling(email) != email]
    for member_id, new in changes:
        if len(new) > 254 or connection.scalar(
                sa.select(sa.func.count()).select_from(members).where(members.c.email == new)):
            continue  # the same mailbox joined twice, or too long: left as it was
        connection.execute(members.update().where(members.c.id == member_id).values(email=new))


def downgrade() -> None:
    pass

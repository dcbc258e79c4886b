"""TOTP seeds sealed at rest

Revision ID: 0014
Revises: 0015
Create Date: 2026-12-01 00:30:00

- staff_users.totp_secret widens from 64 to 255 characters: it now holds a Fernet
  token (about 140 characters), not the base32 seed. Seeds already stored stay readable
  as they are and are sealed on their next use, or at once with `rewards staff
  seal-totp` (which needs the app's keys, so it is a command, not part of this step).
  Downgrading first opens every sealed seed again (with the keys in the environment),
  since the narrower column and older code expect plain seeds.
"""
from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.alter_column('totp_secret', existing_type=sa.String(length=64),
                              type_=sa.String(length=255), existing_nullable=True)


def _open_sealed_seeds() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, totp_secret FROM staff_users "
                                "WHERE totp_secret LIKE 'gAAAAA%'")).fetchall()
    if not rows:
        return
    from contextlib import nullcontext

    from flask import has_app_context

    from rewards import create_app
    from rewards.sealed import unseal

    with nullcontext() if has_app_context() else create_app().app_context():
        for row in rows:
            bind.execute(sa.text("UPDATE staff_users SET totp_secret = :s WHERE id = :i"),
                         {"s": unseal(row.totp_secret), "i": row.id})


def downgrade() -> None:
    _open_sealed_seeds()
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.alter_column('totp_secret', existing_type=sa.String(length=255),
                              type_=sa.String(length=64), existing_nullable=True)

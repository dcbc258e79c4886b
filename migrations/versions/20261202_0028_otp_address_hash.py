"""Login codes name their address by a keyed hash

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-02 04:30:00

- otp_codes.email (the address in clear) becomes otp_codes.email_hash (HMAC-SHA256
  under IDENTIFIER_KEY, rewards/members.py `otp_address`). Anyone may ask for a code for
  any address, so the table held addresses of people who never joined and cannot ask
  for erasure; it now holds none, and codes are deleted a day after they were asked for
  (the nightly login-records purge). Codes live minutes: the ones in flight at the
  upgrade are dropped, and their residents ask for a new one.
"""
from alembic import op
import sqlalchemy as sa

revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM otp_codes")
    with op.batch_alter_table('otp_codes') as batch:
        batch.drop_index('ix_otp_codes_email_created')
        batch.drop_column('email')
        batch.add_column(sa.Column('email_hash', sa.String(length=64), nullable=False))
        batch.create_index('ix_otp_codes_email_hash_created', ['email_hash', 'created_at'],
                           unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM otp_codes")
    with op.batch_alter_table('otp_codes') as batch:
        batch.drop_index('ix_otp_codes_email_hash_created')
        batch.drop_column('email_hash')
        batch.add_column(sa.Column('email', sa.String(length=254), nullable=False))
        batch.create_index('ix_otp_codes_email_created', ['email', 'created_at'],
                           unique=False)

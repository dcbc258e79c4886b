"""Auth hardening: login sessions, lockouts, TOTP, PIN escalation, identifier key ids

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 23:00:00

- login_sessions: one row per login (a resident's refresh-token family, a staff token,
  a partner page cookie); tokens and cookies name it, so revoking it ends them.
- login_throttles: failed logins per account (known or not) and the lock they earn;
  also the row one-time-code requests for an address serialise on.
- staff_users.totp_secret / totp_enabled_at / totp_last_step: second factor.
- members.pin_locks / pin_blocked_at: each PIN lockout doubles the next; after a few
  the card is blocked until a desk unlocks it.
- identifiers.key_id: which IDENTIFIER_KEY hashed the number (rotation report).
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

UTC_DATETIME = rewards.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'login_sessions',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', UTC_DATETIME, nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=True),
        sa.Column('staff_user_id', sa.Uuid(), nullable=True),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('expires_at', UTC_DATETIME, nullable=False),
        sa.Column('revoked_at', UTC_DATETIME, nullable=True),
        sa.Column('revoked_reason', sa.String(length=32), nullable=True),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_login_sessions_member_id_members')),
        sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'],
                                name=op.f('fk_login_sessions_staff_user_id_staff_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_login_sessions')),
    )
    op.create_index(op.f('ix_login_sessions_member_id'), 'login_sessions', ['member_id'])
    op.create_index(op.f('ix_login_sessions_staff_user_id'), 'login_sessions',
                    ['staff_user_id'])
    op.create_table(
        'login_throttles',
        sa.Column('key', sa.String(length=80), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('locked_until', UTC_DATETIME, nullable=True),
        sa.Column('updated_at', UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_login_throttles')),
    )
    with op.batch_alter_table('staff_users') as batch:
        batch.add_column(sa.Column('totp_secret', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('totp_enabled_at', UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))
    with op.batch_alter_table('members') as batch:
        batch.add_column(sa.Column('pin_locks', sa.Integer(), nullable=False,
                                   server_default='0'))
        batch.add_column(sa.Column('pin_blocked_at', UTC_DATETIME, nullable=True))
    with op.batch_alter_table('identifiers') as batch:
        batch.add_column(sa.Column('key_id', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('identifiers') as batch:
        batch.drop_column('key_id')
    with op.batch_alter_table('members') as batch:
        batch.drop_column('pin_blocked_at')
        batch.drop_column('pin_locks')
    with op.batch_alter_table('staff_users') as batch:
        batch.drop_column('totp_last_step')
        batch.drop_column('totp_enabled_at')
        batch.drop_column('totp_secret')
    op.drop_table('login_throttles')
    op.drop_index(op.f('ix_login_sessions_staff_user_id'), table_name='login_sessions')
    op.drop_index(op.f('ix_login_sessions_member_id'), table_name='login_sessions')
    op.drop_table('login_sessions')

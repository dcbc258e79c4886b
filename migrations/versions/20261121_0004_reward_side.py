"""Reward side: catalogue details, partner proposals, fulfilment, settlement, donations

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 06:20:00
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

UTC_DATETIME = rewards.models.base.UTCDateTime(timezone=True)

# Plain ADD COLUMN throughout (NOT NULL columns with a server default, which the models
# declare too): on SQLite a batch "move and copy" of offers would fail against the
# foreign keys of the rows that point at it. Only redemptions, which nothing points
# at, is copied, to drop its unique constraint.


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.add_column('partners', sa.Column('description', sa.Text(), nullable=True))
    op.add_column('partners', sa.Column('fulfilment_url', sa.String(length=500), nullable=True))
    op.add_column('partners', sa.Column('webhook_secret', sa.String(length=128), nullable=True))

    op.add_column('offers', sa.Column('translations', _json(), nullable=False,
                                      server_default=sa.text("'{}'")))
    op.add_column('offers', sa.Column('limit_period', sa.String(length=8), nullable=False,
                                      server_default='ever'))
    op.add_column('offers', sa.Column('eligible_wards', _json(), nullable=True))
    op.add_column('offers', sa.Column('joined_after', UTC_DATETIME, nullable=True))
    op.add_column('offers', sa.Column('value_pence', sa.Integer(), nullable=False,
                                      server_default='0'))
    op.add_column('offers', sa.Column('points_back_on_expiry', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.add_column('offers', sa.Column('fulfilment', sa.String(length=16), nullable=False,
                                      server_default='internal'))
    op.add_column('offers', sa.Column('proposed_by', sa.Uuid(), nullable=True))
    op.add_column('offers', sa.Column('reviewed_by', sa.Uuid(), nullable=True))
    op.add_column('offers', sa.Column('reviewed_at', UTC_DATETIME, nullable=True))
    op.add_column('offers', sa.Column('review_note', sa.Text(), nullable=True))

    op.add_column('rewards', sa.Column('partner_code', sa.String(length=200), nullable=True))
    op.add_column('rewards', sa.Column('partner_reference', sa.String(length=200),
                                       nullable=True))
    op.add_column('rewards', sa.Column('expiry_reminded_at', UTC_DATETIME, nullable=True))
    op.create_index('ix_rewards_status_expires', 'rewards', ['status', 'expires_at'],
                    unique=False)

    # A redemption can be undone (and the voucher redeemed again), so "one per reward"
    # becomes "one standing (not undone) per reward": a partial unique index.
    op.add_column('redemptions', sa.Column('channel', sa.String(length=16), nullable=False,
                                           server_default='code'))
    op.add_column('redemptions', sa.Column('value_pence', sa.Integer(), nullable=False,
                                           server_default='0'))
    op.add_column('redemptions', sa.Column('redeemed_by', sa.Uuid(), nullable=True))
    op.add_column('redemptions', sa.Column('undone_at', UTC_DATETIME, nullable=True))
    op.add_column('redemptions', sa.Column('undone_by', sa.Uuid(), nullable=True))
    with op.batch_alter_table('redemptions') as batch:
        batch.drop_constraint('uq_redemptions_reward_id', type_='unique')
    op.create_index('uq_redemptions_reward_standing', 'redemptions', ['reward_id'], unique=True,
                    sqlite_where=sa.text('undone_at IS NULL'),
                    postgresql_where=sa.text('undone_at IS NULL'))
    op.create_index('ix_redemptions_partner_created', 'redemptions',
                    ['partner_id', 'created_at'], unique=False)
    # Existing redemptions: the offer's value now is the best record of what is owed.
    op.execute(
        'UPDATE redemptions SET value_pence = (SELECT offers.value_pence FROM rewards '
        'JOIN offers ON offers.id = rewards.offer_id WHERE rewards.id = redemptions.reward_id)'
    )

    op.create_table(
        'donations',
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('charity_id', sa.Uuid(), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('posting_id', sa.Uuid(), nullable=False),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(['charity_id'], ['partners.id'],
                                name=op.f('fk_donations_charity_id_partners')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_donations_member_id_members')),
        sa.ForeignKeyConstraint(['posting_id'], ['postings.id'],
                                name=op.f('fk_donations_posting_id_postings')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_donations')),
        sa.UniqueConstraint('posting_id', name=op.f('uq_donations_posting_id')),
    )
    op.create_index('ix_donations_member_created', 'donations', ['member_id', 'created_at'],
                    unique=False)
    op.create_index(op.f('ix_donations_charity_id'), 'donations', ['charity_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_donations_charity_id'), table_name='donations')
    op.drop_index('ix_donations_member_created', table_name='donations')
    op.drop_table('donations')

    op.drop_index('ix_redemptions_partner_created', table_name='redemptions')
    op.drop_index('uq_redemptions_reward_standing', table_name='redemptions')
    # Undone redemptions cannot stay under "one per reward".
    op.execute('DELETE FROM redemptions WHERE undone_at IS NOT NULL')
    with op.batch_alter_table('redemptions') as batch:
        batch.create_unique_constraint('uq_redemptions_reward_id', ['reward_id'])
        for column in ('undone_by', 'undone_at', 'redeemed_by', 'value_pence', 'channel'):
            batch.drop_column(column)

    op.drop_index('ix_rewards_status_expires', table_name='rewards')
    for column in ('expiry_reminded_at', 'partner_reference', 'partner_code'):
        op.drop_column('rewards', column)
    for column in ('review_note', 'reviewed_at', 'reviewed_by', 'proposed_by', 'fulfilment',
                   'points_back_on_expiry', 'value_pence', 'joined_after', 'eligible_wards',
                   'limit_period', 'translations'):
        op.drop_column('offers', column)
    for column in ('webhook_secret', 'fulfilment_url', 'description'):
        op.drop_column('partners', column)

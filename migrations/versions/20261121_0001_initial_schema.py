"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 05:19:29.184789
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('action_types',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_action_types')),
    sa.UniqueConstraint('code', name=op.f('uq_action_types_code'))
    )
    op.create_table('audit_log',
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('actor_role', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=False),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_table('idempotency_keys',
    sa.Column('scope', sa.String(length=120), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_keys')),
    sa.UniqueConstraint('scope', 'key', name=op.f('uq_idempotency_keys_scope_key'))
    )
    op.create_table('members',
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('display_name', sa.String(length=100), nullable=True),
    sa.Column('ward', sa.String(length=100), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('joined_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('erased_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_members')),
    sa.UniqueConstraint('email', name=op.f('uq_members_email'))
    )
    op.create_table('otp_codes',
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('used_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_otp_codes'))
    )
    with op.batch_alter_table('otp_codes', schema=None) as batch_op:
        batch_op.create_index('ix_otp_codes_email_created', ['email', 'created_at'], unique=False)

    op.create_table('outbox',
    sa.Column('job', sa.String(length=200), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('kwargs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('dispatched_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_dispatched_at'), ['dispatched_at'], unique=False)

    op.create_table('partners',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('api_key_hash', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partners')),
    sa.UniqueConstraint('api_key_hash', name=op.f('uq_partners_api_key_hash'))
    )
    op.create_table('rules',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('current_version', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rules'))
    )
    op.create_table('sources',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('api_key_hash', sa.String(length=64), nullable=False),
    sa.Column('signing_secret', sa.String(length=128), nullable=False),
    sa.Column('action_types', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sources')),
    sa.UniqueConstraint('api_key_hash', name=op.f('uq_sources_api_key_hash'))
    )
    op.create_table('accounts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_accounts_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('code', name=op.f('uq_accounts_code'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_member_id'), ['member_id'], unique=False)

    op.create_table('actions',
    sa.Column('source_id', sa.Uuid(), nullable=True),
    sa.Column('external_ref', sa.String(length=200), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('action_type_id', sa.Uuid(), nullable=False),
    sa.Column('type_code', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('flag_reason', sa.Text(), nullable=True),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['action_type_id'], ['action_types.id'], name=op.f('fk_actions_action_type_id_action_types')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_actions_member_id_members')),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_actions_source_id_sources')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_actions')),
    sa.UniqueConstraint('source_id', 'external_ref', name=op.f('uq_actions_source_id_external_ref'))
    )
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.create_index('ix_actions_member_occurred', ['member_id', 'occurred_at'], unique=False)

    op.create_table('identifiers',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('number_hash', sa.String(length=64), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_identifiers_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identifiers')),
    sa.UniqueConstraint('number_hash', name=op.f('uq_identifiers_number_hash'))
    )
    with op.batch_alter_table('identifiers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identifiers_member_id'), ['member_id'], unique=False)

    op.create_table('offers',
    sa.Column('partner_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('category', sa.String(length=32), nullable=True),
    sa.Column('cost_points', sa.Integer(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=True),
    sa.Column('claimed', sa.Integer(), nullable=False),
    sa.Column('per_member_limit', sa.Integer(), nullable=True),
    sa.Column('voucher_valid_days', sa.Integer(), nullable=False),
    sa.Column('starts_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ends_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('stock IS NULL OR claimed <= stock', name=op.f('ck_offers_stock_not_oversold')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_offers_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offers'))
    )
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_offers_partner_id'), ['partner_id'], unique=False)

    op.create_table('rule_versions',
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('action_types', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('condition', sa.Text(), nullable=False),
    sa.Column('points', sa.Text(), nullable=False),
    sa.Column('caps', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('points_caps', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('starts_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('budget_points', sa.Integer(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('stackable', sa.Boolean(), nullable=False),
    sa.Column('hold_days', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['rules.id'], name=op.f('fk_rule_versions_rule_id_rules')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_versions')),
    sa.UniqueConstraint('rule_id', 'version', name=op.f('uq_rule_versions_rule_id_version'))
    )
    with op.batch_alter_table('rule_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rule_versions_rule_id'), ['rule_id'], unique=False)

    op.create_table('staff_users',
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_staff_users_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_users')),
    sa.UniqueConstraint('email', name=op.f('uq_staff_users_email'))
    )
    op.create_table('rewards',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('offer_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('cost_points', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=True),
    sa.Column('issued_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('redeemed_at', rewards.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_rewards_member_id_members')),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_rewards_offer_id_offers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rewards')),
    sa.UniqueConstraint('code', name=op.f('uq_rewards_code'))
    )
    with op.batch_alter_table('rewards', schema=None) as batch_op:
        batch_op.create_index('ix_rewards_member_created', ['member_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_rewards_offer_id'), ['offer_id'], unique=False)

    op.create_table('postings',
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=True),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('action_id', sa.Uuid(), nullable=True),
    sa.Column('reward_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['action_id'], ['actions.id'], name=op.f('fk_postings_action_id_actions')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_postings_member_id_members')),
    sa.ForeignKeyConstraint(['reward_id'], ['rewards.id'], name=op.f('fk_postings_reward_id_rewards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_postings')),
    sa.UniqueConstraint('key', name=op.f('uq_postings_key'))
    )
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_postings_member_id'), ['member_id'], unique=False)

    op.create_table('redemptions',
    sa.Column('reward_id', sa.Uuid(), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_redemptions_partner_id_partners')),
    sa.ForeignKeyConstraint(['reward_id'], ['rewards.id'], name=op.f('fk_redemptions_reward_id_rewards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemptions')),
    sa.UniqueConstraint('reward_id', name=op.f('uq_redemptions_reward_id'))
    )
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_redemptions_partner_id'), ['partner_id'], unique=False)

    op.create_table('awards',
    sa.Column('action_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('rule_version_id', sa.Uuid(), nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('rule_name', sa.String(length=200), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('capped_by', sa.String(length=32), nullable=True),
    sa.Column('occurred_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('inputs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('posting_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['action_id'], ['actions.id'], name=op.f('fk_awards_action_id_actions')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_awards_member_id_members')),
    sa.ForeignKeyConstraint(['posting_id'], ['postings.id'], name=op.f('fk_awards_posting_id_postings')),
    sa.ForeignKeyConstraint(['rule_id'], ['rules.id'], name=op.f('fk_awards_rule_id_rules')),
    sa.ForeignKeyConstraint(['rule_version_id'], ['rule_versions.id'], name=op.f('fk_awards_rule_version_id_rule_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_awards')),
    sa.UniqueConstraint('action_id', 'rule_id', name=op.f('uq_awards_action_id_rule_id'))
    )
    with op.batch_alter_table('awards', schema=None) as batch_op:
        batch_op.create_index('ix_awards_rule_member_occurred', ['rule_id', 'member_id', 'occurred_at'], unique=False)

    op.create_table('posting_lines',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('posting_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('created_at', rewards.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_posting_lines_account_id_accounts')),
    sa.ForeignKeyConstraint(['posting_id'], ['postings.id'], name=op.f('fk_posting_lines_posting_id_postings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_posting_lines'))
    )
    with op.batch_alter_table('posting_lines', schema=None) as batch_op:
        batch_op.create_index('ix_posting_lines_account_created', ['account_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_posting_lines_posting_id'), ['posting_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('posting_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_posting_lines_posting_id'))
        batch_op.drop_index('ix_posting_lines_account_created')

    op.drop_table('posting_lines')
    with op.batch_alter_table('awards', schema=None) as batch_op:
        batch_op.drop_index('ix_awards_rule_member_occurred')

    op.drop_table('awards')
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_redemptions_partner_id'))

    op.drop_table('redemptions')
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_postings_member_id'))

    op.drop_table('postings')
    with op.batch_alter_table('rewards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rewards_offer_id'))
        batch_op.drop_index('ix_rewards_member_created')

    op.drop_table('rewards')
    op.drop_table('staff_users')
    with op.batch_alter_table('rule_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rule_versions_rule_id'))

    op.drop_table('rule_versions')
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_offers_partner_id'))

    op.drop_table('offers')
    with op.batch_alter_table('identifiers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identifiers_member_id'))

    op.drop_table('identifiers')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_index('ix_actions_member_occurred')

    op.drop_table('actions')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_member_id'))

    op.drop_table('accounts')
    op.drop_table('sources')
    op.drop_table('rules')
    op.drop_table('partners')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_dispatched_at'))

    op.drop_table('outbox')
    with op.batch_alter_table('otp_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_otp_codes_email_created')

    op.drop_table('otp_codes')
    op.drop_table('members')
    op.drop_table('idempotency_keys')
    op.drop_table('audit_log')
    op.drop_table('action_types')

"""App and till: several till keys per partner, idempotent redemptions, till references

Revision ID: 0011
Revises: 0007
Create Date: 2026-11-30 23:15:00

- partner_keys: a partner's till API keys, each with its own expiry (the overlap after
  a rotation) and retirement, as source_keys are for sources. The key a partner was
  registered with stays in partners.api_key_hash until the first rotation copies it in.
- redemptions.idempotency_key: the till's Idempotency-Key for the request that made the
  redemption, unique per partner, so a retry after a lost answer finds it.
- redemptions.till_reference: the till's own reference for the sale (a receipt number),
  indexed per partner for looking a redemption up by it.
- wards and ward_postcodes: the wards the council publishes and its postcode lookup; a
  member's ward is chosen from them.
- partners.address, latitude, longitude, opening_hours, logo_url: the place, for maps;
  offers.image_url.
- devices (members' push tokens) and notification_preferences (per kind and channel).
- action_types.translations: names and descriptions in other languages (Welsh).
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0011'
down_revision = '0007'
branch_labels = None
depends_on = None

UTC_TIME = rewards.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'partner_keys',
        sa.Column('partner_id', sa.Uuid(), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('key_prefix', sa.String(length=16), nullable=True),
        sa.Column('label', sa.String(length=100), nullable=True),
        sa.Column('expires_at', UTC_TIME, nullable=True),
        sa.Column('retired_at', UTC_TIME, nullable=True),
        sa.Column('created_by', sa.Uuid(), nullable=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(['partner_id'], ['partners.id'],
                                name=op.f('fk_partner_keys_partner_id_partners')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_keys')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_partner_keys_key_hash')),
    )
    op.create_index(op.f('ix_partner_keys_partner_id'), 'partner_keys', ['partner_id'])
    with op.batch_alter_table('redemptions') as batch:
        batch.add_column(sa.Column('idempotency_key', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('till_reference', sa.String(length=64), nullable=True))
    op.create_index('uq_redemptions_partner_idempotency_key', 'redemptions',
                    ['partner_id', 'idempotency_key'], unique=True,
                    sqlite_where=sa.text('idempotency_key IS NOT NULL'),
                    postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.create_index('ix_redemptions_partner_till_reference', 'redemptions',
                    ['partner_id', 'till_reference'],
                    sqlite_where=sa.text('till_reference IS NOT NULL'),
                    postgresql_where=sa.text('till_reference IS NOT NULL'))
    op.create_table(
        'wards',
        sa.Column('code', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint('code', name=op.f('pk_wards')),
        sa.UniqueConstraint('name', name=op.f('uq_wards_name')),
    )
    op.create_table(
        'ward_postcodes',
        sa.Column('postcode', sa.String(length=8), nullable=False),
        sa.Column('ward_code', sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(['ward_code'], ['wards.code'],
                                name=op.f('fk_ward_postcodes_ward_code_wards')),
        sa.PrimaryKeyConstraint('postcode', name=op.f('pk_ward_postcodes')),
    )
    op.create_index(op.f('ix_ward_postcodes_ward_code'), 'ward_postcodes', ['ward_code'])
    with op.batch_alter_table('partners') as batch:
        batch.add_column(sa.Column('address', sa.String(length=300), nullable=True))
        batch.add_column(sa.Column('latitude', sa.Float(), nullable=True))
        batch.add_column(sa.Column('longitude', sa.Float(), nullable=True))
        batch.add_column(sa.Column('opening_hours', rewards.models.base.JSONType,
                                   nullable=True))
        batch.add_column(sa.Column('logo_url', sa.String(length=500), nullable=True))
    with op.batch_alter_table('offers') as batch:
        batch.add_column(sa.Column('image_url', sa.String(length=500), nullable=True))
    op.create_table(
        'devices',
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('platform', sa.String(length=8), nullable=False),
        sa.Column('token', sa.String(length=400), nullable=False),
        sa.Column('last_seen_at', UTC_TIME, nullable=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_devices_member_id_members')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_devices')),
        sa.UniqueConstraint('token', name=op.f('uq_devices_token')),
    )
    op.create_index(op.f('ix_devices_member_id'), 'devices', ['member_id'])
    with op.batch_alter_table('action_types') as batch:
        batch.add_column(sa.Column('translations', rewards.models.base.JSONType,
                                   nullable=False, server_default=sa.text("'{}'")))
    op.create_table(
        'notification_preferences',
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_notification_preferences_member_id_members')),
        sa.PrimaryKeyConstraint('member_id', 'kind', 'channel',
                                name=op.f('pk_notification_preferences')),
    )


def downgrade() -> None:
    with op.batch_alter_table('action_types') as batch:
        batch.drop_column('translations')
    op.drop_table('notification_preferences')
    op.drop_index(op.f('ix_devices_member_id'), table_name='devices')
    op.drop_table('devices')
    with op.batch_alter_table('offers') as batch:
        batch.drop_column('image_url')
    with op.batch_alter_table('partners') as batch:
        for column in ('logo_url', 'opening_hours', 'longitude', 'latitude', 'address'):
            batch.drop_column(column)
    op.drop_index(op.f('ix_ward_postcodes_ward_code'), table_name='ward_postcodes')
    op.drop_table('ward_postcodes')
    op.drop_table('wards')
    op.drop_index('ix_redemptions_partner_till_reference', table_name='redemptions')
    op.drop_index('uq_redemptions_partner_idempotency_key', table_name='redemptions')
    with op.batch_alter_table('redemptions') as batch:
        batch.drop_column('till_reference')
        batch.drop_column('idempotency_key')
    op.drop_index(op.f('ix_partner_keys_partner_id'), table_name='partner_keys')
    op.drop_table('partner_keys')

"""Ways in: source keys, events and claim codes, self-reports and reviews, assisted members

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 06:20:00
"""
from alembic import op
import sqlalchemy as sa
import rewards.models.base

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

UTC_TIME = rewards.models.base.UTCDateTime(timezone=True)
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _id_and_created():
    return [sa.Column('id', sa.Uuid(), nullable=False),
            sa.Column('created_at', UTC_TIME, nullable=False)]


def upgrade() -> None:
    with op.batch_alter_table('members') as batch:
        batch.add_column(sa.Column('postcode_district', sa.String(length=8), nullable=True))
        batch.add_column(sa.Column('pin_hash', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('pin_failures', sa.Integer(), nullable=False,
                                   server_default='0'))
        batch.add_column(sa.Column('pin_locked_until',
                                   rewards.models.base.UTCDateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column('enrolled_by', sa.Uuid(), nullable=True))
    with op.batch_alter_table('members') as batch:
        batch.alter_column('pin_failures', server_default=None)

    # Sources: how far back their items may go; keys that rotate with an overlap.
    with op.batch_alter_table('sources') as batch:
        batch.add_column(sa.Column('max_age_days', sa.Integer(), nullable=True))
    op.create_table(
        'source_keys',
        sa.Column('source_id', sa.Uuid(), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('key_prefix', sa.String(length=16), nullable=True),
        sa.Column('signing_secret', sa.String(length=128), nullable=False),
        sa.Column('expires_at', UTC_TIME, nullable=True),
        sa.Column('retired_at', UTC_TIME, nullable=True),
        sa.Column('created_by', sa.Uuid(), nullable=True),
        *_id_and_created(),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'],
                                name=op.f('fk_source_keys_source_id_sources')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_source_keys')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_source_keys_key_hash')),
    )
    op.create_index(op.f('ix_source_keys_source_id'), 'source_keys', ['source_id'])

    # CSV imports and their per-row reports.
    op.create_table(
        'source_imports',
        sa.Column('source_id', sa.Uuid(), nullable=False),
        sa.Column('filename', sa.String(length=200), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('uploaded_by', sa.Uuid(), nullable=True),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('rows_done', sa.Integer(), nullable=False),
        sa.Column('accepted', sa.Integer(), nullable=False),
        sa.Column('held', sa.Integer(), nullable=False),
        sa.Column('duplicate', sa.Integer(), nullable=False),
        sa.Column('rejected', sa.Integer(), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('started_at', UTC_TIME, nullable=True),
        sa.Column('finished_at', UTC_TIME, nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        *_id_and_created(),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'],
                                name=op.f('fk_source_imports_source_id_sources')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_source_imports')),
    )
    op.create_index(op.f('ix_source_imports_source_id'), 'source_imports', ['source_id'])
    op.create_table(
        'source_import_rows',
        sa.Column('import_id', sa.Uuid(), nullable=False),
        sa.Column('row_number', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('external_ref', sa.String(length=200), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('action_id', sa.Uuid(), nullable=True),
        sa.Column('created_at', UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(['import_id'], ['source_imports.id'],
                                name=op.f('fk_source_import_rows_import_id_source_imports')),
        sa.PrimaryKeyConstraint('import_id', 'row_number', name=op.f('pk_source_import_rows')),
    )

    # Actions: where each came from, and the review queue (flagged ones only).
    with op.batch_alter_table('actions') as batch:
        batch.add_column(sa.Column('origin', sa.String(length=16), nullable=False,
                                   server_default='source'))
    op.create_index('ix_actions_flagged', 'actions', ['created_at'],
                    postgresql_where=sa.text("status = 'flagged'"),
                    sqlite_where=sa.text("status = 'flagged'"))

    # Events and their claim codes.
    op.create_table(
        'events',
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('action_type_id', sa.Uuid(), nullable=False),
        sa.Column('type_code', sa.String(length=64), nullable=False),
        sa.Column('starts_at', UTC_TIME, nullable=False),
        sa.Column('ends_at', UTC_TIME, nullable=False),
        sa.Column('max_claims', sa.Integer(), nullable=True),
        sa.Column('claims', sa.Integer(), nullable=False),
        sa.Column('mode', sa.String(length=16), nullable=False),
        sa.Column('attributes', JSON, nullable=False),
        sa.Column('created_by', sa.Uuid(), nullable=True),
        *_id_and_created(),
        sa.CheckConstraint('max_claims IS NULL OR claims <= max_claims',
                           name=op.f('ck_events_claims_within_max')),
        sa.ForeignKeyConstraint(['action_type_id'], ['action_types.id'],
                                name=op.f('fk_events_action_type_id_action_types')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    )
    op.create_table(
        'event_codes',
        sa.Column('event_id', sa.Uuid(), nullable=False),
        sa.Column('code', sa.String(length=16), nullable=False),
        sa.Column('claimed_at', UTC_TIME, nullable=True),
        sa.Column('member_id', sa.Uuid(), nullable=True),
        *_id_and_created(),
        sa.ForeignKeyConstraint(['event_id'], ['events.id'],
                                name=op.f('fk_event_codes_event_id_events')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_event_codes_member_id_members')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_event_codes')),
        sa.UniqueConstraint('code', name=op.f('uq_event_codes_code')),
    )
    op.create_index(op.f('ix_event_codes_event_id'), 'event_codes', ['event_id'])
    op.create_table(
        'event_claims',
        sa.Column('event_id', sa.Uuid(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('code_id', sa.Uuid(), nullable=False),
        sa.Column('action_id', sa.Uuid(), nullable=False),
        *_id_and_created(),
        sa.ForeignKeyConstraint(['action_id'], ['actions.id'],
                                name=op.f('fk_event_claims_action_id_actions')),
        sa.ForeignKeyConstraint(['code_id'], ['event_codes.id'],
                                name=op.f('fk_event_claims_code_id_event_codes')),
        sa.ForeignKeyConstraint(['event_id'], ['events.id'],
                                name=op.f('fk_event_claims_event_id_events')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_event_claims_member_id_members')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_event_claims')),
        sa.UniqueConstraint('action_id', name=op.f('uq_event_claims_action_id')),
        sa.UniqueConstraint('event_id', 'member_id',
                            name=op.f('uq_event_claims_event_id_member_id')),
    )
    op.create_index(op.f('ix_event_claims_member_id'), 'event_claims', ['member_id'])

    # Self-reports with evidence, and reviewers' decisions.
    op.create_table(
        'self_reports',
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('action_id', sa.Uuid(), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('photo_type', sa.String(length=32), nullable=True),
        sa.Column('photo_size', sa.Integer(), nullable=True),
        *_id_and_created(),
        sa.ForeignKeyConstraint(['action_id'], ['actions.id'],
                                name=op.f('fk_self_reports_action_id_actions')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_self_reports_member_id_members')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_self_reports')),
        sa.UniqueConstraint('action_id', name=op.f('uq_self_reports_action_id')),
    )
    op.create_index(op.f('ix_self_reports_member_id'), 'self_reports', ['member_id'])
    op.create_table(
        'self_report_photos',
        sa.Column('self_report_id', sa.Uuid(), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(['self_report_id'], ['self_reports.id'],
                                name=op.f('fk_self_report_photos_self_report_id_self_reports')),
        sa.PrimaryKeyConstraint('self_report_id', name=op.f('pk_self_report_photos')),
    )
    op.create_table(
        'reviews',
        sa.Column('action_id', sa.Uuid(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('decision', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('held_reason', sa.Text(), nullable=True),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('reviewer_id', sa.Uuid(), nullable=True),
        *_id_and_created(),
        sa.ForeignKeyConstraint(['action_id'], ['actions.id'],
                                name=op.f('fk_reviews_action_id_actions')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_reviews_member_id_members')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_reviews')),
        sa.UniqueConstraint('action_id', name=op.f('uq_reviews_action_id')),
    )
    op.create_index(op.f('ix_reviews_member_id'), 'reviews', ['member_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_reviews_member_id'), table_name='reviews')
    op.drop_table('reviews')
    op.drop_table('self_report_photos')
    op.drop_index(op.f('ix_self_reports_member_id'), table_name='self_reports')
    op.drop_table('self_reports')
    op.drop_index(op.f('ix_event_claims_member_id'), table_name='event_claims')
    op.drop_table('event_claims')
    op.drop_index(op.f('ix_event_codes_event_id'), table_name='event_codes')
    op.drop_table('event_codes')
    op.drop_table('events')
    op.drop_index('ix_actions_flagged', table_name='actions')
    with op.batch_alter_table('actions') as batch:
        batch.drop_column('origin')
    op.drop_table('source_import_rows')
    op.drop_index(op.f('ix_source_imports_source_id'), table_name='source_imports')
    op.drop_table('source_imports')
    op.drop_index(op.f('ix_source_keys_source_id'), table_name='source_keys')
    op.drop_table('source_keys')
    with op.batch_alter_table('sources') as batch:
        batch.drop_column('max_age_days')

    with op.batch_alter_table('members') as batch:
        batch.drop_column('enrolled_by')
        batch.drop_column('pin_locked_until')
        batch.drop_column('pin_failures')
        batch.drop_column('pin_hash')
        batch.drop_column('postcode_district')

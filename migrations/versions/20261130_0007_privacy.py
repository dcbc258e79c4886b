"""Privacy: consents per purpose, card link secrets

Revision ID: 0007
Revises: 0010
Create Date: 2026-11-30 23:00:00

- consents: each consent given or withdrawn by a member for a purpose, a history; the
  latest row per purpose is the member's current choice.
- members.travel_data_withheld: the member withdrew travel-data consent (ingest reads
  it with the member's row and refuses their travel items).
- card_link_secrets: per card kind, the secret its issuer makes link codes with (a
  resident linking a card in the app proves holding it with such a code).
"""

from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0010"
branch_labels = None
depends_on = None


def _time() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("version", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name="fk_consents_member_id_members"),
        sa.PrimaryKeyConstraint("id", name="pk_consents"),
    )
    op.create_index("ix_consents_member_purpose_created", "consents",
                    ["member_id", "purpose", "created_at"])
    op.create_table(
        "card_link_secrets",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("rotated_at", _time(), nullable=False),
        sa.Column("rotated_by", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("kind", name="pk_card_link_secrets"),
    )


    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("travel_data_withheld", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_column("travel_data_withheld")
    op.drop_table("card_link_secrets")
    op.drop_index("ix_consents_member_purpose_created", table_name="consents")
    op.drop_table("consents")

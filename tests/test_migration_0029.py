"""Migration 0029: addresses stored in another spelling than logins now look up
(fullwidth letters, a Unicode domain) are rewritten, so their owners find their
accounts; one whose new spelling another member has already is left alone."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from rewards.migrate import downgrade, upgrade

from .test_migration_0005 import scratch_url  # noqa: F401  (a fixture)

ADDRESSES = {
    "ａlice@example.org": "alice@example.org",          # fullwidth letter
    "bob@exämple.org": "bob@xn--exmple-cua.org",        # Unicode domain
    "carol@example.org": "carol@example.org",           # unchanged
    "ｄave@example.org": "ｄave@example.org",             # dave@ is another member's
    "dave@example.org": "dave@example.org",
}


def test_upgrade_rewrites_addresses_in_the_spelling_logins_use(
    scratch_url: str, tmp_path: Path  # noqa: F811
) -> None:
    upgrade(scratch_url)
    downgrade(scratch_url, "0028")
    engine = create_engine(scratch_url)
    ids = {address: uuid.uuid4() for address in ADDRESSES}
    with engine.begin() as connection:
        for address, member_id in ids.items():
            connection.execute(text(
                "INSERT INTO members (id, email, locale, joined_at, created_at, pin_failures, "
                "pin_locks, travel_data_withheld) VALUES (:id, :email, 'en', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, 0, :no)"),
                {"id": member_id if engine.dialect.name == "postgresql" else member_id.hex,
                 "email": address, "no": False})
    upgrade(scratch_url)
    with engine.connect() as connection:
        stored = dict(connection.execute(text("SELECT email, email FROM members")).all())
    assert set(stored) == set(ADDRESSES.values())
    engine.dispose()

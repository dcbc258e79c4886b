"""bench/api.py's scheme: a large history loaded straight into PostgreSQL with
generate_series (not through the API), and what the clients need to call it."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text


def load_history(session: Any, members: int, actions: int, type_id: uuid.UUID,
                 source_id: uuid.UUID, rule: Any, version_id: uuid.UUID) -> None:
    """Members, their accounts and `actions` past bus taps of 10 points each (award, earn
    posting, two lines), spread over the last 700 days, all in SQL."""
    from rewards.ledger import scheme_account

    issuance = scheme_account(session, "scheme:issuance").id
    params = {"m": members, "a": actions, "type": type_id, "source": source_id,
              "rule": rule.id, "version": version_id, "name": rule.name, "issuance": issuance,
              "now": datetime.now(UTC) - timedelta(hours=1)}
    member = "md5('member' || (n % :m))::uuid"
    moment = "(:now - (:a - n) * (interval '700 days' / :a))"
    statements = [
        "INSERT INTO members (id, email, locale, joined_at, created_at, pin_failures, ward) "
        "SELECT md5('member' || n)::uuid, 'bench' || n || '@example.org', 'en', "
        ":now - interval '800 days', :now - interval '800 days', 0, 'Roundhay' "
        "FROM generate_series(0, :m - 1) AS n",
        "INSERT INTO accounts (id, code, kind, member_id, created_at) "
        "SELECT md5(k.kind || n)::uuid, 'member:' || md5('member' || n)::uuid || ':' || k.kind, "
        "k.kind, md5('member' || n)::uuid, :now - interval '800 days' "
        "FROM generate_series(0, :m - 1) AS n, (VALUES ('available'), ('pending')) AS k(kind)",
        "INSERT INTO actions (id, source_id, external_ref, member_id, action_type_id, "
        "type_code, occurred_at, attributes, status, points, origin, created_at) "
        f"SELECT md5('action' || n)::uuid, :source, 'hist-' || n, {member}, :type, "
        f"'bus_journey', {moment}, '{{\"route\": \"1\"}}'::jsonb, 'accepted', 10, 'source', "
        f"{moment} FROM generate_series(0, :a - 1) AS n",
        "INSERT INTO postings (id, kind, reason, key, member_id, action_id, available_at, "
        f"expires_at, created_at) SELECT md5('posting' || n)::uuid, 'earn', 'Bus journey', "
        f"'hist-earn:' || n, {member}, md5('action' || n)::uuid, {moment}, "
        f"{moment} + interval '24 months', {moment} FROM generate_series(0, :a - 1) AS n",
        "INSERT INTO posting_lines (id, posting_id, account_id, points, created_at) "
        f"SELECT md5('debit' || n)::uuid, md5('posting' || n)::uuid, :issuance, -10, {moment} "
        "FROM generate_series(0, :a - 1) AS n",
        "INSERT INTO posting_lines (id, posting_id, account_id, points, created_at) "
        "SELECT md5('credit' || n)::uuid, md5('posting' || n)::uuid, "
        f"md5('available' || (n % :m))::uuid, 10, {moment} FROM generate_series(0, :a - 1) AS n",
        "INSERT INTO awards (id, action_id, member_id, rule_id, rule_version_id, rule_version, "
        "rule_name, points, occurred_at, inputs, posting_id, points_written_off, created_at) "
        f"SELECT md5('award' || n)::uuid, md5('action' || n)::uuid, {member}, :rule, :version, "
        f"1, :name, 10, {moment}, '{{}}'::jsonb, md5('posting' || n)::uuid, 0, {moment} "
        "FROM generate_series(0, :a - 1) AS n",
        "UPDATE rules SET points_awarded = points_awarded + 10 * :a WHERE id = :rule",
    ]
    rebuild = set_aside_keys(session, ("actions", "postings", "posting_lines", "awards"))
    for statement in statements:
        started = time.perf_counter()
        session.execute(text(statement), params)
        print(f"  {statement.split('(')[0].strip().lower()}: "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    for statement in rebuild:
        session.execute(text(statement))
    session.commit()
    print(f"  indexes and foreign keys made again: {time.perf_counter() - started:.1f} s",
          flush=True)


def set_aside_keys(session: Any, tables: tuple[str, ...]) -> list[str]:
    """Drop the secondary indexes and foreign keys of `tables` for the bulk load (built
    once afterwards, as a restore does, instead of row by row); returns the statements
    that make them again, unique ones checking the loaded rows as they are built."""
    again: list[str] = []
    for table in tables:
        for name, definition in session.execute(text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('f', 'u')"),
                {"t": table}).all():
            session.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
            again.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for name, definition in session.execute(text(
                "SELECT i.indexname, i.indexdef FROM pg_indexes AS i WHERE i.tablename = :t "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)"),
                {"t": table}).all():
            session.execute(text(f'DROP INDEX "{name}"'))
            again.append(definition)
    return again


def member_logins(session: Any, member_ids: list[uuid.UUID]) -> list[str]:
    """A login for each member, as signing in makes one (a login_sessions row that the
    access token names), inserted in bulk; returns each member's access token."""
    from flask import current_app

    from rewards.models.login import LoginSession
    from rewards.sessions import member_tokens

    expires = datetime.now(UTC) + timedelta(seconds=current_app.config["REFRESH_TOKEN_TTL"])
    logins = [LoginSession(id=uuid.uuid4(), kind="member", member_id=member_id,
                           generation=0, expires_at=expires) for member_id in member_ids]
    rows = [{"id": login.id, "kind": "member", "member_id": login.member_id,
             "generation": 0, "expires_at": expires} for login in logins]
    for start in range(0, len(rows), 5000):
        session.execute(LoginSession.__table__.insert(), rows[start:start + 5000])
    session.commit()
    return [member_tokens(login)["access_token"] for login in logins]


def council_staff(session: Any) -> dict[str, Any]:
    """An analyst's token for the dashboard's figures, with the rollups built from the
    whole history (as the cron keeps them); returns the token and the figures' names."""
    from werkzeug.security import generate_password_hash

    from rewards.dashboard import FIGURES
    from rewards.dashboard.refresh import refresh
    from rewards.models import StaffUser
    from rewards.sessions import staff_token

    started = time.perf_counter()
    report = refresh(session)
    print(f"  dashboard rollups: {report.days} days in {time.perf_counter() - started:.1f} s",
          flush=True)
    analyst = StaffUser(email="analyst@council.example", role="analyst",
                        password_hash=generate_password_hash(secrets.token_hex(16)))
    session.add(analyst)
    session.commit()
    return {"staff_token": staff_token(session, analyst)["access_token"],
            "figures": sorted(FIGURES)}


def build(members: int, actions: int, vouchers: int, carded: int) -> dict[str, Any]:
    """The scheme; returns what the clients need (tokens, keys, ids, codes, cards)."""
    from rewards.demo import ACTION_TYPES, RULES
    from rewards.extensions import db
    from rewards.members import card_hash
    from rewards.models import (
        ActionType,
        Identifier,
        Offer,
        Partner,
        Reward,
        Rule,
        RuleVersion,
        Source,
    )
    from rewards.security import api_key_hash, new_api_key
    from rewards.vouchers import new_voucher_code

    session = db.session
    now = datetime.now(UTC)
    types = {}
    for code, name, category, description in ACTION_TYPES:
        types[code] = ActionType(id=uuid.uuid4(), code=code, name=name, category=category,
                                 description=description)
        session.add(types[code])
    bus = next(r for r in RULES if r.action_types == ("bus_journey",))
    rule = Rule(id=uuid.uuid4(), name=bus.name, current_version=1)
    version = RuleVersion(id=uuid.uuid4(), rule_id=rule.id, version=1, name=bus.name,
                          action_types=list(bus.action_types), condition=bus.condition,
                          points=bus.points, caps=dict(bus.caps), points_caps={},
                          starts_at=now - timedelta(days=800), status="active")
    source_key, secret = new_api_key("src"), secrets.token_hex(32)
    source = Source(id=uuid.uuid4(), name="West Yorkshire travel feed",
                    api_key_hash=api_key_hash(source_key), signing_secret=secret,
                    action_types=["bus_journey"])
    till_key = new_api_key("ptn")
    partner = Partner(id=uuid.uuid4(), name="Laynes Espresso", kind="business",
                      api_key_hash=api_key_hash(till_key))
    session.add_all([rule, version, source, partner])
    offers = [Offer(id=uuid.uuid4(), partner_id=partner.id, title=f"Offer {n}",
                    description="A treat from a Leeds partner.", category="food",
                    cost_points=10 if n == 0 else 50 + 25 * n, value_pence=250, status="live",
                    translations={"cy": {"title": f"Cynnig {n}", "description": None}})
              for n in range(30)]
    session.add_all(offers)
    session.flush()
    load_history(session, members, actions, types["bus_journey"].id, source.id, rule,
                 version.id)

    codes = set()
    while len(codes) < vouchers:
        codes.add(new_voucher_code())
    member_ids = [row[0] for row in session.execute(text(
        "SELECT id FROM members ORDER BY random() LIMIT 20000"))]
    rows = [{"id": uuid.uuid4(), "member_id": member_ids[n % len(member_ids)],
             "offer_id": offers[1].id, "status": "issued", "cost_points": 75, "code": code,
             "issued_at": now, "expires_at": now + timedelta(days=30), "created_at": now}
            for n, code in enumerate(sorted(codes))]
    for start in range(0, len(rows), 5000):
        session.execute(Reward.__table__.insert(), rows[start:start + 5000])
    cards = []
    for n, member_id in enumerate(member_ids[:carded]):
        number = f"6335{n:012d}"
        cards.append(number)
        session.add(Identifier(member_id=member_id, kind="travel_card",
                               number_hash=card_hash("travel_card", number), last4=number[-4:]))
    session.commit()
    session.commit()
    staff = council_staff(session)
    # VACUUM as well as ANALYZE: a table that just took a million rows is due for
    # autovacuum (its insert threshold), which would otherwise run during the
    # measurements and take its I/O and a core with it; then a CHECKPOINT, so the
    # load's gigabyte of WAL is not written out by checkpoints during them (both
    # showed as p99s near 100 ms and a third fewer reads a second). A scheme in
    # service has its history vacuumed and checkpointed long ago.
    with session.get_bind().connect() as connection:
        quiet = connection.execution_options(isolation_level="AUTOCOMMIT")
        quiet.execute(text("VACUUM ANALYZE"))
        quiet.execute(text("CHECKPOINT"))
    tokens = member_logins(session, member_ids)
    return {"tokens": tokens, "claim_offer": str(offers[0].id), "till_key": till_key,
            **staff,
            "codes": sorted(codes, key=lambda _: secrets.randbits(32)),
            "source_key": source_key, "secret": secret, "cards": cards}



"""Dashboard speed: every figure's endpoint read from the rollups against the same figure
computed by GROUP BY over the raw tables, in one PostgreSQL database, checking both
give equal numbers; and how long the rollups take to take in a day's new actions.

    python bench/dashboard.py [--database-url URL] [--actions N] [--repeat N]

Makes its own database (rewards_bench_<random>), migrates it, generates members,
actions (with awards, earn postings and their ledger lines) and rewards with
generate_series, builds the rollups, times each endpoint through the Flask test client
(--repeat times) and the raw computation (--raw-repeat times), then adds one day's
actions and times the refresh. Drops the database at the end. The last line printed
is one JSON object with the figures."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgdb import create_database, drop_database  # bench/pgdb.py, beside this file
from sqlalchemy import text  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

from rewards import create_app  # noqa: E402
from rewards.dashboard import FIGURES, Filters, Raw, compute  # noqa: E402
from rewards.dashboard.refresh import refresh  # noqa: E402
from rewards.demo import ACTION_TYPES, LEEDS_WARDS  # noqa: E402
from rewards.extensions import db  # noqa: E402
from rewards.migrate import upgrade  # noqa: E402
from rewards.models import StaffUser  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ACTIONS_PER_MEMBER = 50
DAYS = 365

SETUP = """
INSERT INTO action_types (id, created_at, code, name, category)
  SELECT gen_random_uuid(), now(), t.code, t.name, t.category
  FROM json_to_recordset(:types) AS t(code text, name text, category text);
INSERT INTO sources (id, created_at, name, api_key_hash, signing_secret, action_types, active)
  VALUES (gen_random_uuid(), now(), 'bench', md5(random()::text) || md5(random()::text),
          'secret', '[]', true);
INSERT INTO partners (id, created_at, name, kind, api_key_hash, active)
  SELECT gen_random_uuid(), now(), 'Partner ' || n, 'business',
         md5(random()::text) || md5(random()::text), true FROM generate_series(1, 5) n;
INSERT INTO offers (id, created_at, partner_id, title, translations, cost_points, claimed,
                    limit_period, voucher_valid_days, status, value_pence,
                    points_back_on_expiry, fulfilment)
  SELECT gen_random_uuid(), now(), p.id, 'Offer ' || n || ' of ' || p.name, '{}', 100, 0,
         'ever', 30, 'live', 150, false, 'internal'
  FROM partners p CROSS JOIN generate_series(1, 3) n;
INSERT INTO rules (id, created_at, name, current_version, points_awarded)
  VALUES (gen_random_uuid(), now(), 'Everything', 1, 0);
INSERT INTO rule_versions (id, created_at, rule_id, version, name, action_types, condition,
                           points, caps, points_caps, starts_at, priority, stackable,
                           hold_days, status)
  SELECT gen_random_uuid(), now(), id, 1, name, '[]', 'true', '10', '{}', '{}',
         now() - interval '400 days', 0, true, 0, 'active' FROM rules;
INSERT INTO rules (id, created_at, name, current_version, points_awarded)
  VALUES (gen_random_uuid(), now(), 'Bus month', 1, 0);
INSERT INTO rule_versions (id, created_at, rule_id, version, name, action_types, condition,
                           points, caps, points_caps, starts_at, ends_at, priority, stackable,
                           hold_days, status)
  SELECT gen_random_uuid(), now(), id, 1, name, '["bus_journey"]', 'true', '5', '{}', '{}',
         now() - interval '50 days', now() - interval '20 days', 1, true, 0, 'active'
  FROM rules WHERE name = 'Bus month';
INSERT INTO accounts (id, created_at, code, kind)
  VALUES (gen_random_uuid(), now(), 'scheme\\:issuance', 'issuance'),
         (gen_random_uuid(), now(), 'scheme\\:rewards_spent', 'rewards_spent');
CREATE TABLE bench_members AS
  SELECT n, gen_random_uuid() AS id,
         (:wards)::jsonb ->> ((n * 7) % :ward_count) AS ward,
         now() - (random() * interval '365 days') AS joined_at
  FROM generate_series(0, :members - 1) n;
INSERT INTO members (id, created_at, email, display_name, ward, locale, joined_at,
                     pin_failures, enrolled_by, birth_year)
  SELECT id, joined_at, 'b' || n || '@example.org', 'Bench ' || n, ward, 'en', joined_at, 0,
         CASE WHEN n % 12 = 0 THEN gen_random_uuid() END,
         CASE WHEN n % 3 = 0 THEN NULL ELSE 1940 + n % 66 END
  FROM bench_members;
INSERT INTO accounts (id, created_at, code, kind, member_id)
  SELECT gen_random_uuid(), joined_at, 'member:' || id || '\\:available', 'available', id
  FROM bench_members;
CREATE TABLE bench_types AS
  SELECT row_number() OVER (ORDER BY code) - 1 AS n, id, code FROM action_types;
"""

ACTIONS = """
INSERT INTO actions (id, created_at, source_id, external_ref, member_id, action_type_id,
                     type_code, occurred_at, attributes, status, points, origin)
  SELECT gen_random_uuid(), COALESCE(CAST(:created AS timestamptz), s.at + interval '5 minutes'),
         (SELECT id FROM sources LIMIT 1),
         'b-' || :batch || '-' || g, m.id, t.id, t.code, s.at,
         CASE t.code WHEN 'train_journey' THEN '{"distance_km": 12}'::jsonb
                     WHEN 'volunteering_hour' THEN '{"hours": 2}'::jsonb ELSE '{}'::jsonb END,
         CASE WHEN g % 100 = 0 THEN 'revoked' ELSE 'accepted' END,
         CASE WHEN g % 100 = 0 THEN 0 ELSE 10 END, 'source'
  FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g
  CROSS JOIN LATERAL (SELECT :newest - (((g * 2654435761) % (:days * 86400))
                             * interval '1 second') AS at) s
  JOIN bench_members m ON m.n = (g * 40503) % :members
  JOIN bench_types t ON t.n = CASE WHEN g % 10 < 6 THEN 0 ELSE (g * 31) % :type_count END;
"""

LEDGER = """
INSERT INTO postings (id, created_at, kind, reason, key, member_id, action_id, available_at,
                      expires_at)
  SELECT gen_random_uuid(), a.created_at, 'earn', 'bench', 'award:' || a.id, a.member_id,
         a.id, a.created_at, a.created_at + interval '24 months'
  FROM actions a WHERE a.points > 0 AND a.created_at >= :since;
INSERT INTO posting_lines (id, posting_id, account_id, points, created_at)
  SELECT gen_random_uuid(), p.id, (SELECT id FROM accounts WHERE code = 'scheme\\:issuance'),
         -10, p.created_at FROM postings p WHERE p.kind = 'earn' AND p.created_at >= :since
  UNION ALL
  SELECT gen_random_uuid(), p.id, acc.id, 10, p.created_at
  FROM postings p JOIN accounts acc ON acc.member_id = p.member_id AND acc.kind = 'available'
  WHERE p.kind = 'earn' AND p.created_at >= :since;
INSERT INTO awards (id, created_at, action_id, member_id, rule_id, rule_version_id,
                    rule_version, rule_name, points, occurred_at, inputs, posting_id,
                    points_written_off)
  SELECT gen_random_uuid(), p.created_at, p.action_id, p.member_id, r.rule_id, r.id, 1,
         r.name, 10, p.created_at, '{}', p.id, 0
  FROM postings p CROSS JOIN (SELECT id, rule_id, name FROM rule_versions LIMIT 1) r
  WHERE p.kind = 'earn' AND p.created_at >= :since;
"""

REWARDS = """
INSERT INTO rewards (id, created_at, member_id, offer_id, status, cost_points, code,
                     issued_at, expires_at, redeemed_at)
  SELECT gen_random_uuid(), s.at, m.id, o.id,
         CASE g % 4 WHEN 0 THEN 'redeemed' WHEN 1 THEN 'expired' ELSE 'issued' END, 100,
         'C' || g, s.at, s.at + interval '30 days',
         CASE WHEN g % 4 = 0 THEN s.at + interval '3 days' END
  FROM generate_series(1, CAST(:count AS bigint)) g
  CROSS JOIN LATERAL (SELECT now() - (((g * 2654435761) % (365 * 86400))
                             * interval '1 second') AS at) s
  JOIN bench_members m ON m.n = (g * 7057) % :members
  JOIN (SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM offers) o
    ON o.n = g % 15;
INSERT INTO redemptions (id, created_at, reward_id, partner_id, channel, value_pence)
  SELECT gen_random_uuid(), r.redeemed_at, r.id, o.partner_id, 'code', 150
  FROM rewards r JOIN offers o ON o.id = r.offer_id WHERE r.status = 'redeemed';
"""


def _run(sql: str, **params: Any) -> None:
    for statement in sql.split(";\n"):
        if not statement.strip():
            continue
        with db.engine.begin() as connection:
            # Generated rows are consistent by construction: skip the per-row foreign key
            # triggers (the benchmark's own database; needs a superuser, as postgres is).
            connection.execute(text("SET LOCAL session_replication_role = replica"))
            connection.execute(text(statement), params)
        # Fresh statistics for the next statement's plan: a join planned on an empty
        # table's estimates would loop over every row of the other.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("ANALYZE"))


BULK_TABLES = ("actions", "postings", "posting_lines", "awards")


def _without_indexes() -> list[str]:
    """Drop the big tables' indexes and keys for the load, returning the statements
    that make them again: random UUIDs inserted one by one into a B-tree cost far more
    than building it once, sorted, afterwards. Foreign keys pointing at these keys go
    with them (CASCADE) and are not made again: the generated rows are consistent."""
    again: list[str] = []
    with db.engine.begin() as connection:
        for name, definition, table in connection.execute(text(
                "SELECT conname, pg_get_constraintdef(oid), conrelid::regclass::text "
                "FROM pg_constraint WHERE conrelid::regclass::text = ANY(:tables) "
                "AND contype IN ('p', 'u') ORDER BY contype"),
                {"tables": list(BULK_TABLES)}):
            again.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for name, definition in connection.execute(text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(:tables) "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint)"),
                {"tables": list(BULK_TABLES)}):
            again.append(definition)
            connection.execute(text(f'DROP INDEX "{name}"'))
        for statement in again:
            if statement.startswith("ALTER TABLE"):
                table, name = statement.split()[2], statement.split('"')[1]
                connection.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}" '
                                        "CASCADE"))
    return again


def generate(actions: int) -> dict[str, float]:
    started = time.perf_counter()
    members = max(200, actions // ACTIONS_PER_MEMBER)
    types = [{"code": c, "name": n, "category": k} for c, n, k, _ in ACTION_TYPES]
    _run(SETUP, types=json.dumps(types), wards=json.dumps(list(LEEDS_WARDS)),
         ward_count=len(LEEDS_WARDS), members=members)
    again = _without_indexes()
    chunk = 1_000_000
    for batch, first in enumerate(range(1, actions + 1, chunk)):
        _run(ACTIONS, batch=batch, first=first, last=min(actions, first + chunk - 1),
             members=members, days=DAYS, type_count=len(types),
             newest=_now_minus(hours=1), created=None)
    _run(LEDGER, since=_now_minus(days=10_000))
    _run(REWARDS, count=max(100, actions // 100), members=members)
    with db.engine.begin() as connection:
        connection.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        for statement in again:
            connection.execute(text(statement))
    _recount_totals()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))
    return {"members": members, "generate_s": round(time.perf_counter() - started, 1)}


def _recount_totals() -> None:
    """The lines went in with triggers off (_run): members' running totals summed once."""
    from rewards.ledger.totals import recount_totals

    recount_totals(db.session)
    db.session.commit()


def _now_minus(**delta: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) - timedelta(**delta)


def one_more_day(actions: int) -> int:
    """A day's share of `actions`, created now, as the day's ingest would."""
    count = max(1, actions // DAYS)
    with db.engine.begin() as connection:
        start = int(connection.execute(text(
            "SELECT count(*) FROM actions")).scalar() or 0) + 10
    since = _now_minus(seconds=1)
    members = int(db.session.execute(text("SELECT count(*) FROM bench_members")).scalar() or 0)
    db.session.commit()
    _run(ACTIONS, batch=999, first=start, last=start + count - 1, members=members, days=1,
         type_count=len(ACTION_TYPES), newest=_now_minus(minutes=1), created=_now_minus())
    _run(LEDGER, since=since)
    _recount_totals()
    return count


class Counted(Raw):
    """The raw source, noting which of its tables a figure asked for: a figure that
    asks for none reads the same tables (members, rewards, redemptions, rules) in both
    forms and is timed, but left out of `speedup_vs_raw`."""

    def __init__(self) -> None:
        super().__init__()
        self.used: set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        if name in ("member_days", "member_months", "member_hours", "ledger_days",
                    "expiry_days", "tenure_cells", "span_cells", "sum_cells", "join_days"):
            object.__getattribute__(self, "used").add(name)
        return object.__getattribute__(self, name)


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--actions", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--raw-repeat", type=int, default=3)
    args = parser.parse_args()
    url, admin = create_database(args.database_url)
    try:
        upgrade(url)
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None,
                          "DASHBOARD_REFRESH_SECONDS": 0, "LOG_LEVEL": "WARNING",
                          "SECRET_KEY": "bench-secret-key-at-least-32-bytes-long!"})
        with app.app_context():
            made = generate(args.actions)
            print(f"generated {args.actions:,} actions, {made['members']:,} members in "
                  f"{made['generate_s']} s", flush=True)
            started = time.perf_counter()
            built = refresh(db.session)
            build_s = round(time.perf_counter() - started, 1)
            print(f"rollups built in {build_s} s: {built.steps}", flush=True)
            db.session.add(StaffUser(email="analyst@bench.example", role="analyst",
                                     password_hash=generate_password_hash("bench pass")))
            db.session.commit()
        client = app.test_client()
        token = client.post("/v1/auth/login", json={"email": "analyst@bench.example",
                                                    "password": "bench pass"}).json[
            "access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        result: dict[str, Any] = {"actions": args.actions, **made, "rollup_build_s": build_s,
                                  "build_steps_ms": built.steps,
                                  "p95_ms": {}, "raw_ms": {}, "speedup": {}, "equal": {},
                                  "direct": []}
        for name in FIGURES if args.raw_repeat else ():  # --raw-repeat 0: refresh only
            timings = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                response = client.get(f"/v1/admin/dashboard/{name}", headers=headers)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (name, response.json)
            served = response.json
            raw_timings = []
            with app.app_context():
                filters = Filters.from_args({})
                for _ in range(args.raw_repeat):
                    started = time.perf_counter()
                    source = Counted()
                    raw = compute(name, filters, source=source).to_json()
                    raw_timings.append((time.perf_counter() - started) * 1000)
                db.session.remove()
            result["p95_ms"][name] = round(p95(timings), 1)
            result["raw_ms"][name] = round(statistics.median(raw_timings), 1)
            result["speedup"][name] = round(result["raw_ms"][name] / max(0.1, p95(timings)), 1)
            result["equal"][name] = served["rows"] == raw["rows"]
            if not source.used:
                result["direct"].append(name)
            print(f"{name}: p95 {result['p95_ms'][name]} ms, raw {result['raw_ms'][name]} ms, "
                  f"x{result['speedup'][name]}, equal={result['equal'][name]}"
                  f"{'' if source.used else ', direct'}", flush=True)
        with app.app_context():
            added = one_more_day(args.actions)
            started = time.perf_counter()
            report = refresh(db.session)
            result["refresh_one_day"] = {
                "actions": added, "ms": round((time.perf_counter() - started) * 1000),
                "days_touched": report.days, "steps_ms": report.steps}
            result["refresh_actions_per_s"] = round(
                added / max(0.001, result["refresh_one_day"]["ms"] / 1000))
        result["worst_p95_ms"] = max(result["p95_ms"].values(), default=None)
        # The smallest speed-up of the figures that read the rollups (the others read the
        # same small tables both ways: see "direct").
        result["speedup_vs_raw"] = min((speed for name, speed in result["speedup"].items()
                                        if name not in result["direct"]), default=None)
        result["all_equal"] = all(result["equal"].values())
        print(json.dumps(result))
    finally:
        drop_database(admin, url)


if __name__ == "__main__":
    main()

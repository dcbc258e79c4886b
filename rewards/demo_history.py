"""`rewards demo`'s history: months of members and activity before the demo's live
weeks, so the staff dashboard has figures to show, and the facts behind them.

The live weeks go through ingest like a source's batches; months of history that way
would take minutes, so history is written in bulk: the same rows ingest writes (the
action, its awards, one earn posting and its two lines), consistent with the ledger's
checks. Ward populations and deprivation deciles are ILLUSTRATIVE, not official
figures: a council loads its own through the dashboard settings API."""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from .dashboard.settings import put
from .ledger import earn_terms, scheme_account
from .models import (
    Account,
    Action,
    ActionType,
    AuditEntry,
    Award,
    Member,
    Posting,
    PostingLine,
    Rule,
    RuleVersion,
    Source,
)

CAMPAIGN = "Leisure winter push"
# (ward, adults, IMD decile): ILLUSTRATIVE values for the demo, shaped like Leeds
# (inner east and south more deprived, outer north less) but not official statistics.
WARD_FACTS: tuple[tuple[str, int, int], ...] = (
    ("Adel & Wharfedale", 14800, 10), ("Alwoodley", 17600, 9), ("Ardsley & Robin Hood", 16900, 6),
    ("Armley", 19400, 2), ("Beeston & Holbeck", 18700, 1), ("Bramley & Stanningley", 17800, 3),
    ("Burmantofts & Richmond Hill", 19900, 1), ("Calverley & Farsley", 17500, 8),
    ("Chapel Allerton", 18600, 5), ("Cross Gates & Whinmoor", 18300, 5),
    ("Farnley & Wortley", 19100, 3), ("Garforth & Swillington", 16200, 8),
    ("Gipton & Harehills", 20500, 1), ("Guiseley & Rawdon", 16800, 9), ("Harewood", 14300, 10),
    ("Headingley & Hyde Park", 21900, 4), ("Horsforth", 17100, 10),
    ("Hunslet & Riverside", 22400, 2), ("Killingbeck & Seacroft", 19800, 1),
    ("Kippax & Methley", 16400, 7), ("Kirkstall", 18200, 4),
    ("Little London & Woodhouse", 23100, 2), ("Middleton Park", 19300, 1),
    ("Moortown", 17900, 8), ("Morley North", 17200, 6), ("Morley South", 17000, 5),
    ("Otley & Yeadon", 16600, 8), ("Pudsey", 17700, 6), ("Rothwell", 16500, 6),
    ("Roundhay", 18100, 8), ("Temple Newsam", 17400, 4), ("Weetwood", 17300, 7),
    ("Wetherby", 15800, 10),
)
# A few wards the demo scheme barely reaches: their cells are small and suppressed.
QUIET_WARDS = ("Harewood", "Wetherby", "Adel & Wharfedale")
# (type, kg CO2 per action, per km, car km per action, per km): illustrative estimates.
IMPACT = (("bus_journey", 0.55, 0, 4.0, 0), ("train_journey", 0, 0.13, 0, 1.0),
          ("cycle_hire", 0.7, 0, 4.0, 0))


def facts(session: Session) -> None:
    """Illustrative ward facts, impact factors and the value of a point (audited)."""
    for ward, adults, decile in WARD_FACTS:
        put(session, f"ward:{ward}", {"adult_population": adults, "imd_decile": decile,
                                      "illustrative": True}, None)
    for code, co2, co2_km, car, car_km in IMPACT:
        put(session, f"impact:{code}", {"co2_kg": co2, "co2_kg_per_km": co2_km, "car_km": car,
                                        "car_km_per_km": car_km}, None)
    put(session, "value_per_point", {"pence": 1.0}, None)
    session.add(AuditEntry(actor_id=None, actor_role="system", action="update",
                           target_type="dashboard_setting", target_id="demo",
                           details={"via": "rewards demo", "illustrative": True}))


@dataclass
class Persona:
    commuter: bool
    rail_km: int | None
    leisure: bool
    recycler: bool
    volunteer: bool
    stays_days: int


def _campaign(session: Session, now: datetime) -> tuple[uuid.UUID, uuid.UUID, datetime,
                                                         datetime]:
    """A rule with a window, six weeks that ended a month ago: extra points for
    leisure visits. Made once; reused by a forced reload."""
    starts_at = (now - timedelta(weeks=11)).replace(hour=0, minute=0, second=0)
    ends_at = starts_at + timedelta(weeks=6)
    rule = session.scalar(select(Rule).where(Rule.name == CAMPAIGN))
    if rule is None:
        rule = Rule(id=uuid.uuid4(), name=CAMPAIGN, current_version=1)
        session.add(rule)
        session.add(RuleVersion(
            rule_id=rule.id, version=1, name=CAMPAIGN,
            description="10 extra points a leisure centre visit for six weeks; once a day.",
            action_types=["leisure_visit"], condition="true", points="10",
            caps={"per_day": 1}, points_caps={}, starts_at=starts_at, ends_at=ends_at,
            budget_points=None, priority=0, stackable=True, hold_days=0, status="active",
            created_by=None))
        session.flush()
        session.add(AuditEntry(actor_id=None, actor_role="system", action="create",
                               target_type="rule", target_id=str(rule.id),
                               details={"via": "rewards demo", "name": CAMPAIGN}))
    version = session.scalar(select(RuleVersion).where(RuleVersion.rule_id == rule.id,
                                                       RuleVersion.version == 1))
    assert version is not None
    return rule.id, version.id, version.starts_at, version.ends_at or ends_at


def _persona(rng: random.Random) -> Persona:
    travel = rng.random()
    return Persona(
        commuter=travel < 0.45,
        rail_km=rng.choice((4, 9, 11, 16, 27)) if 0.45 <= travel < 0.55 else None,
        leisure=rng.random() < 0.4,
        recycler=rng.random() < 0.35,
        volunteer=rng.random() < 0.1,
        # Some stop after a few weeks, most carry on: retention is visible.
        stays_days=int(rng.expovariate(1 / 110)) + 7,
    )


def _sqlite_value(value: Any) -> Any:
    """What SQLAlchemy's types would store on SQLite (UUIDs as hex, naive UTC times)."""
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _bulk(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert many rows. On SQLite the values are converted here and handed to the
    driver at once: per-value type processing would triple the demo's load time."""
    if not rows:
        return
    keys = list(rows[0])
    if session.get_bind().dialect.name != "sqlite":
        for start in range(0, len(rows), 5000):
            session.execute(insert(table), rows[start:start + 5000])
        return
    sql = (f"INSERT INTO {table.name} ({', '.join(keys)}) "
           f"VALUES ({', '.join('?' for _ in keys)})")
    values = [tuple(_sqlite_value(row[key]) for key in keys) for row in rows]
    session.connection().exec_driver_sql(sql, values)


def load_history(session: Session, rng: random.Random, *, members: int, months: int,
                 until: datetime, timezone: str, wards: tuple[str, ...]) -> dict[str, int]:
    """`members` more members who joined over the last `months` months, and their
    actions from joining until `until`, written in bulk. Returns counts."""
    if members <= 0 or months <= 0:
        return {"members": 0, "actions": 0, "points": 0}
    zone = ZoneInfo(timezone)
    facts(session)
    campaign_rule, campaign_version, campaign_start, campaign_end = _campaign(session, until)
    types = {t.code: t for t in session.scalars(select(ActionType))}
    rules = {}
    for rule, version in session.execute(
            select(Rule, RuleVersion).join(RuleVersion, (RuleVersion.rule_id == Rule.id)
                                           & (RuleVersion.version == Rule.current_version))):
        for code in version.action_types or []:
            if len(version.action_types) == 1 and code not in rules:
                rules[code] = (rule.id, version.id, version.name)
    sources = {code: source.id for source in session.scalars(select(Source))
               for code in source.action_types or []}
    issuance = scheme_account(session, "scheme:issuance").id
    weights = [0.08 if ward in QUIET_WARDS else 1.0 for ward in wards]
    first = until - timedelta(days=30 * months)
    stamp = until.strftime("%Y%m%d%H%M%S")
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    totals: dict[uuid.UUID, int] = defaultdict(int)
    count = points_total = 0

    def act(member_id: uuid.UUID, code: str, day: date, hour: int,
            attributes: dict[str, Any], points: int) -> None:
        nonlocal count, points_total
        at = datetime.combine(day, time(hour, rng.randint(0, 59)), zone).astimezone(UTC)
        if at >= until or code not in types or code not in rules:
            return
        count += 1
        seen = at + timedelta(minutes=rng.randint(1, 30))
        action_id, posting_id = uuid.uuid4(), uuid.uuid4()
        awards = [(rules[code], points)]
        if code == "leisure_visit" and campaign_start <= at < campaign_end:
            awards.append(((campaign_rule, campaign_version, CAMPAIGN), 10))
        total = sum(p for _, p in awards)
        points_total += total
        rows["actions"].append({
            "id": action_id, "created_at": seen, "source_id": sources.get(code),
            "external_ref": f"hist-{stamp}-{count:07d}", "member_id": member_id,
            "action_type_id": types[code].id, "type_code": code, "occurred_at": at,
            "attributes": attributes, "status": "accepted", "flag_reason": None,
            "points": total, "origin": "source"})
        available_at, expires_at = earn_terms(seen, 0)
        rows["postings"].append({
            "id": posting_id, "created_at": seen, "kind": "earn",
            "reason": " + ".join(f"{name} v1" for (_, _, name), _ in awards),
            "key": f"award:{action_id}:{awards[0][0][0]}", "member_id": member_id,
            "action_id": action_id, "reward_id": None, "available_at": available_at,
            "expires_at": expires_at, "origin_id": None})
        rows["lines"] += [
            {"id": uuid.uuid4(), "posting_id": posting_id, "account_id": issuance,
             "points": -total, "created_at": seen},
            {"id": uuid.uuid4(), "posting_id": posting_id, "account_id": accounts[member_id],
             "points": total, "created_at": seen}]
        for (rule_id, version_id, name), award_points in awards:
            totals[rule_id] += award_points
            rows["awards"].append({
                "id": uuid.uuid4(), "created_at": seen, "action_id": action_id,
                "member_id": member_id, "rule_id": rule_id, "rule_version_id": version_id,
                "rule_version": 1, "rule_name": name, "points": award_points,
                "capped_by": None, "occurred_at": at, "inputs": {}, "posting_id": posting_id,
                "revoked_at": None, "points_written_off": 0})

    accounts: dict[uuid.UUID, uuid.UUID] = {}
    people = []
    for n in range(members):
        member_id = uuid.uuid4()
        joined = first + timedelta(seconds=rng.randint(0, int((until - first).total_seconds())
                                                       - 3600))
        desk = rng.random() < 0.08
        rows["members"].append({
            "id": member_id, "created_at": joined, "joined_at": joined, "locale": "en",
            "email": None if desk else f"history{stamp}-{n:05d}@example.org",
            "display_name": f"Resident H{n:05d}", "ward": rng.choices(wards, weights)[0],
            "enrolled_by": uuid.uuid4() if desk else None, "pin_failures": 0,
            "birth_year": rng.choice((None, None, *range(1940, 2008)))})
        for kind in ("available", "pending"):
            account_id = uuid.uuid4()
            rows["accounts"].append({"id": account_id, "code": f"member:{member_id}:{kind}",
                                     "kind": kind, "member_id": member_id,
                                     "created_at": joined})
            if kind == "available":
                accounts[member_id] = account_id
        people.append((member_id, joined.astimezone(zone).date(), _persona(rng)))

    last_day = until.astimezone(zone).date()
    for member_id, joined_day, p in people:
        end = min(last_day, joined_day + timedelta(days=p.stays_days))
        day = joined_day
        while day <= end:
            weekend = day.isoweekday() >= 6
            settled = 1.0 if (day - joined_day).days >= 28 else 0.7  # habits grow
            if p.commuter and not weekend and rng.random() < 0.35 * settled:
                act(member_id, "bus_journey", day, rng.choice((7, 8, 8)), {"route": "16"}, 10)
                act(member_id, "bus_journey", day, rng.randint(16, 18), {"route": "16"}, 10)
            if p.rail_km and not weekend and rng.random() < 0.5 * settled:
                act(member_id, "train_journey", day, 8, {"distance_km": p.rail_km},
                    5 + p.rail_km)
            if p.leisure:
                boost = 2.0 if campaign_start.date() <= day < campaign_end.date() else 1.0
                if rng.random() < 0.12 * boost:
                    act(member_id, "leisure_visit", day, rng.randint(6, 20), {}, 15)
            if p.recycler and rng.random() < (0.2 if weekend else 0.04):
                act(member_id, "recycling_drop", day, rng.randint(9, 16),
                    {"kg": rng.randint(2, 20)}, 5)
            if p.volunteer and weekend and rng.random() < 0.3:
                hours = rng.choice((1, 2, 3))
                act(member_id, "volunteering_hour", day, 10, {"hours": hours}, 20 * hours)
            day += timedelta(days=1)

    tables = (("members", Member), ("accounts", Account), ("actions", Action),
              ("postings", Posting), ("lines", PostingLine), ("awards", Award))
    for key, model in tables:
        _bulk(session, model.__table__, rows[key])
    for rule_id, points in sorted(totals.items()):
        session.execute(update(Rule).where(Rule.id == rule_id)
                        .values(points_awarded=Rule.points_awarded + points))
    session.commit()
    if session.get_bind().dialect.name == "sqlite":
        # Fresh statistics after a bulk load, so SQLite's planner picks the indexes
        # (a member's balance by their postings, not by every issuance line).
        session.execute(text("ANALYZE"))
        session.commit()
    return {"members": members, "actions": count, "points": points_total}

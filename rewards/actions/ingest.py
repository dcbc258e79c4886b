"""A source's batch of actions: validate, dedupe, evaluate the rules, post to the ledger.

A batch is one transaction and a fixed handful of statements whatever its size: the
member and budget locks, then every read that decides (cards, duplicates, cap and
budget use) in grouped queries, the rules in memory, and one bulk write per table
(COPY on PostgreSQL). bench/ingest.py measures it."""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import (
    ARRAY,
    Row,
    Table,
    any_,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    union_all,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..ids import IdPool
from ..ledger import LedgerError, add_points_awarded, check_balanced, earn_terms, scheme_account
from ..members import card_hash, rehash_cards
from ..models import (
    Account,
    Action,
    ActionType,
    Award,
    Identifier,
    Member,
    Posting,
    PostingLine,
    Rule,
    Source,
    utcnow,
)
from ..rules import (
    PERIODS,
    CompiledRule,
    Evaluation,
    RuleSet,
    Usage,
    build_context,
    evaluate,
    member_facts,
    period_bounds,
)
from .rulebook import live_rules, log_rule_failures
from .screening import control_book

log = logging.getLogger("rewards.actions")


@dataclass
class Item:
    """A batch item that passed validation."""

    index: int
    external_ref: str
    type_code: str
    occurred_at: datetime
    attributes: dict[str, Any]
    card: tuple[str, str] | None = None
    member_id: uuid.UUID | None = None


@dataclass
class Limits:
    max_future: timedelta
    max_age: timedelta


# RFC 3339 date-time: full date, T (or a space), full time, then Z or an offset. Python's
# fromisoformat alone also takes ISO 8601 forms sources should not send (20261120T0815Z).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<zone>[Zz]|[+-]\d{2}:\d{2})?"
)
_EXAMPLE_TIME = "2026-11-20T08:15:00Z"
# The rules engine takes numbers up to 64-bit integers; larger ones fail inside it.
MAX_ATTRIBUTE_NUMBER = 2**63
# One award larger than this is a formula gone wrong (or fed absurd attributes), not
# a reward: the rule is treated as failed and the action flagged.
MAX_AWARD_POINTS = 1_000_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# JSON may escape half of a surrogate pair (\ud800) on its own: Python keeps it, but it
# is not a character, cannot be written as UTF-8, and PostgreSQL refuses it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_UNICODE = "must be valid Unicode text (it holds half of a UTF-16 surrogate pair)"


def check_time(value: Any) -> datetime | str:
    """An RFC 3339 time with a zone, in UTC; or why not."""
    if not isinstance(value, str):
        return f"occurred_at must be an RFC 3339 time string, e.g. {_EXAMPLE_TIME}"
    match = _RFC3339.fullmatch(value)
    if match is None:
        return f"occurred_at must be an RFC 3339 time, e.g. {_EXAMPLE_TIME}; got {value[:40]!r}"
    if match.group("zone") is None:
        return (f"occurred_at has no time zone: end it with Z (UTC) or an offset such as "
                f"+01:00; got {value!r}")
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        return f"occurred_at is not a real time ({error}); got {value!r}"


def parse_time(value: Any) -> datetime | None:
    checked = check_time(value)
    return checked if isinstance(checked, datetime) else None


def _attributes_problem(attributes: Mapping[str, Any]) -> str | None:
    """Values the database or the rules engine cannot hold: NUL characters, lone
    surrogates, numbers that are not finite or are too large."""
    stack: list[tuple[str, Any]] = [("attributes", attributes)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Mapping):
            for key, inner in value.items():
                if "\x00" in key:
                    return f"{path}: keys must not contain NUL characters"
                if _SURROGATE.search(key):
                    return f"{path}: keys {_NOT_UNICODE}"
                stack.append((f"{path}.{key}", inner))
        elif isinstance(value, list):
            stack.extend((f"{path}[{n}]", inner) for n, inner in enumerate(value))
        elif isinstance(value, str):
            if "\x00" in value:
                return f"{path} must not contain NUL characters"
            if _SURROGATE.search(value):
                return f"{path} {_NOT_UNICODE}"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{path} must be a finite number, not {value}"
        elif (isinstance(value, int | float) and not isinstance(value, bool)
              and abs(value) >= MAX_ATTRIBUTE_NUMBER):
            return f"{path} is too large: numbers must be smaller than 2^63 in size"
    return None


def validate_item(
    index: int,
    raw: Any,
    allowed_types: set[str],
    now: datetime,
    limits: Limits,
    known_types: set[str] | None = None,
) -> Item | str:
    """Decide whether one batch item is usable; if not, say why in words a source's
    developer can act on. `allowed_types` are the types this source may send,
    `known_types` all the scheme's types (to tell a typo from a missing permission)."""
    if not isinstance(raw, Mapping):
        return "each item must be a JSON object"
    ref = raw.get("external_ref")
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 200:
        return "external_ref must be a non-empty string of at most 200 characters"
    if _CONTROL.search(ref):
        return "external_ref must not contain control characters"
    if _SURROGATE.search(ref):
        return f"external_ref {_NOT_UNICODE}"
    type_code = raw.get("type")
    if not isinstance(type_code, str) or not type_code:
        return "type is required: an action type code such as bus_journey"
    if type_code not in allowed_types:
        if known_types is not None and type_code in known_types:
            may_send = ", ".join(sorted(allowed_types)) or "none"
            return (f"this source may not send {type_code!r} actions; "
                    f"the types it may send: {may_send}")
        if known_types is not None:
            return f"unknown type {type_code!r}: the scheme has no action type with this code"
        return f"unknown type {type_code!r} for this source"
    occurred_at = check_time(raw.get("occurred_at"))
    if isinstance(occurred_at, str):
        return occurred_at
    if occurred_at > now + limits.max_future:
        return (f"occurred_at is in the future (more than "
                f"{int(limits.max_future.total_seconds())} seconds ahead of {iso_utc(now)})")
    if occurred_at < now - limits.max_age:
        return f"occurred_at is older than {limits.max_age.days} days"
    attributes = raw.get("attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, Mapping):
        return "attributes must be a JSON object"
    problem = _attributes_problem(attributes)
    if problem:
        return problem
    member = raw.get("member")
    if not isinstance(member, Mapping):
        return "member is required: {kind, number} of a linked card, or {member_id}"
    item = Item(index, ref, type_code, occurred_at, dict(attributes))
    if "member_id" in member:
        try:
            item.member_id = uuid.UUID(str(member["member_id"]))
        except ValueError:
            return "member.member_id must be a member's id (a UUID)"
    else:
        kind, number = member.get("kind"), member.get("number")
        if not isinstance(kind, str) or not isinstance(number, str) or not number.strip():
            return "member needs kind and number (strings) of a linked card"
        if _SURROGATE.search(kind) or _SURROGATE.search(number):
            return f"member kind and number {_NOT_UNICODE}"
        item.card = (kind, number)
    return item


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class BatchOutcome:
    results: list[dict[str, Any]]
    accepted: int = 0
    points: int = 0


# -- reading many rows at once ----------------------------------------------------------

# Outside PostgreSQL, IN lists of at most this many values: inside every driver's limit
# on bound parameters (SQLite's is 32,766).
_CHUNK = 1000


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def is_postgres(session: Session) -> bool:
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def _pg_array(values: Iterable[uuid.UUID | datetime]) -> str:
    """A PostgreSQL array literal of ids or times (whose text has no commas, quotes or
    braces), for CAST(:p AS uuid[]) or timestamptz[] where it is read once (never in a
    filter: there the cast would run for every row). The driver adapts a long Python
    list of either element by element, several times slower than the server parses this."""
    return "{" + ",".join(map(str, values)) + "}"


def _one_of(postgres: bool, column: Any, values: Iterable[Any]) -> Iterator[Any]:
    """Conditions that together say `column IN values`, in sorted order. On PostgreSQL
    one `= ANY(array)`: the statement's text is the same for any count, so the driver
    prepares it once; elsewhere IN lists of at most _CHUNK values."""
    ordered = sorted(values)
    if not ordered:
        return
    if postgres:
        yield column == any_(literal(ordered, ARRAY(column.type)))
    else:
        for chunk in _chunks(ordered):
            yield column.in_(chunk)


# -- cap and budget use -----------------------------------------------------------------

# (member, rule id, period, window start): the key of a cap's use.
WindowKey = tuple[uuid.UUID, str, str, datetime]


@dataclass(frozen=True)
class RulePlan:
    """What the batch needs of one live rule, worked out once per batch."""

    rule: CompiledRule
    periods: tuple[str, ...]  # periods with a cap on actions or points
    rule_id: uuid.UUID
    version_id: uuid.UUID


def rule_plans(rules: Sequence[CompiledRule]) -> dict[str, RulePlan]:
    """Plans by rule version id."""
    return {
        rule.spec.version_id: RulePlan(
            rule,
            tuple(p for p in PERIODS if p in rule.spec.caps or p in rule.spec.points_caps),
            uuid.UUID(rule.spec.rule_id),
            uuid.UUID(rule.spec.version_id),
        )
        for rule in rules
    }


# One statement for every (member, rule, window) triple, unnested from arrays: its text
# never changes (so it is prepared once), and LATERAL makes each triple one range scan
# of ix_awards_rule_member_occurred whatever the planner thinks of the table's size.
_USAGE_SQL = text("""
SELECT w.n, u.count, u.points
FROM unnest(CAST(CAST(:members AS text) AS uuid[]), CAST(CAST(:rules AS text) AS uuid[]),
            CAST(CAST(:starts AS text) AS timestamptz[]),
            CAST(CAST(:ends AS text) AS timestamptz[]))
     WITH ORDINALITY AS w(member_id, rule_id, starts, ends, n)
CROSS JOIN LATERAL (
    SELECT count(*) AS count, coalesce(sum(a.points), 0) AS points FROM awards AS a
    WHERE a.rule_id = w.rule_id AND a.member_id = w.member_id
      AND a.occurred_at >= w.starts AND a.occurred_at < w.ends AND a.points > 0
      AND a.revoked_at IS NULL
) AS u
WHERE u.count > 0
""")
# Outside PostgreSQL: grouped selects, one per window and UNION ALL'd this many a query.
_BRANCHES_PER_QUERY = 8


@dataclass
class UsageBook:
    """Cap and budget use for one batch: read from the stored awards once, for every
    (member, rule, period window) the batch touches, then counted forward in memory as
    the batch awards points. Awards of zero points use no cap, so only awards with
    points count, and those of revoked actions no longer do. A budget's use is the
    rule's running total (rules.points_awarded), read under the rule's lock."""

    windows: dict[WindowKey, tuple[int, int]] = field(default_factory=dict)
    budgets: dict[str, int] = field(default_factory=dict)

    def load(self, session: Session, postgres: bool,
             wanted: Mapping[WindowKey, datetime], budgeted: set[str]) -> None:
        """`wanted`: each key with the end of its window."""
        if postgres:
            self._load_postgres(session, wanted)
        else:
            self._load_grouped(session, wanted)
        if budgeted:
            self.budgets.update(dict.fromkeys(budgeted, 0))
            for condition in _one_of(postgres, Rule.id, {uuid.UUID(r) for r in budgeted}):
                for rule_id, spent in session.execute(
                    select(Rule.id, Rule.points_awarded).where(condition)
                ):
                    self.budgets[str(rule_id)] = int(spent)

    def _load_postgres(self, session: Session, wanted: Mapping[WindowKey, datetime]) -> None:
        """One statement: the exact (member, rule, window) triples, unnested from arrays."""
        keys = list(wanted)
        if not keys:
            return
        rows = session.execute(_USAGE_SQL, {
            "members": _pg_array(key[0] for key in keys),
            "rules": "{" + ",".join(key[1] for key in keys) + "}",
            "starts": _pg_array(key[3] for key in keys),
            "ends": _pg_array(wanted.values()),
        })
        for n, count, points in rows:
            self.windows[keys[n - 1]] = (int(count), int(points))

    def _load_grouped(self, session: Session, wanted: Mapping[WindowKey, datetime]) -> None:
        """One grouped select per (period, window), members and rules as IN lists."""
        by_window: dict[tuple[str, datetime, datetime], tuple[set[str], set[uuid.UUID]]] = {}
        for (member_id, rule_id, period, start), end in wanted.items():
            rule_ids, member_ids = by_window.setdefault((period, start, end), (set(), set()))
            rule_ids.add(rule_id)
            member_ids.add(member_id)
        branches = []
        labels: list[tuple[str, datetime]] = []
        for (period, start, end), (rule_ids, member_ids) in sorted(by_window.items()):
            rules = sorted(uuid.UUID(rule_id) for rule_id in rule_ids)
            for members in _chunks(sorted(member_ids)):
                branch = select(
                    literal_column(str(len(labels))).label("w"), Award.member_id,
                    Award.rule_id, func.count(Award.id), func.coalesce(func.sum(Award.points), 0),
                ).where(Award.rule_id.in_(rules), Award.member_id.in_(members),
                        Award.points > 0, Award.revoked_at.is_(None))
                if period != "lifetime":
                    branch = branch.where(Award.occurred_at >= start, Award.occurred_at < end)
                branches.append(branch.group_by(Award.member_id, Award.rule_id))
                labels.append((period, start))
        for group in _chunks(branches, _BRANCHES_PER_QUERY):
            statement = group[0] if len(group) == 1 else union_all(*group)
            for label, member_id, rule_id, count, points in session.execute(statement):
                period, start = labels[int(label)]
                self.windows[(member_id, str(rule_id), period, start)] = (int(count),
                                                                          int(points))

    def usage_for(self, member_id: uuid.UUID, plans: Sequence[RulePlan],
                  windows: Mapping[str, datetime]) -> Usage:
        """What the rules have used for this member in the windows (period -> start)
        of one action."""
        usage = Usage()
        for plan in plans:
            spec = plan.rule.spec
            rule_id = spec.rule_id
            for period in plan.periods:
                count, points = self.windows.get((member_id, rule_id, period, windows[period]),
                                                 (0, 0))
                usage.counts[(rule_id, period)] = count
                usage.points[(rule_id, period)] = points
            if spec.budget_points is not None:
                usage.budget_spent[rule_id] = self.budgets.get(rule_id, 0)
        return usage

    def record(self, member_id: uuid.UUID, plan: RulePlan, points: int,
               windows: Mapping[str, datetime]) -> None:
        rule_id = plan.rule.spec.rule_id
        for period in plan.periods:
            key = (member_id, rule_id, period, windows[period])
            count, total = self.windows.get(key, (0, 0))
            self.windows[key] = (count + 1, total + points)
        if plan.rule.spec.budget_points is not None:
            self.budgets[rule_id] = self.budgets.get(rule_id, 0) + points


# Retries when a concurrent batch wins a race: the same external_ref committed first
# (unique key), or PostgreSQL breaking a lock cycle (deadlock, serialization failure).
ATTEMPTS = 4
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def _retryable(error: DBAPIError) -> bool:
    if isinstance(error, IntegrityError):
        return True
    orig = error.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state in _RETRYABLE_SQLSTATES


def ingest_batch(session: Session, source: Source, items: Sequence[Any]) -> BatchOutcome:
    """Record a batch in one transaction. A concurrent batch carrying the same refs
    makes the insert fail on the unique key; the retry then reports them as duplicates."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            outcome = _ingest(session, source, items)
            session.commit()
            return outcome
        except (IntegrityError, OperationalError) as error:
            session.rollback()
            if attempt == ATTEMPTS or not _retryable(error):
                raise
            log.info("batch from source %s lost a race (attempt %d), retrying: %s",
                     source.id, attempt, error.orig)
    raise AssertionError("unreachable")


def lock_for_awards(session: Session, member_ids: set[uuid.UUID]) -> dict[uuid.UUID, Row[Any]]:
    """Caps are counted per member from the awards already stored and budgets per rule
    from its running total (rules.points_awarded), so two transactions awarding at once
    must not both read the same counts and then both award. Anything that awards under
    rules takes the locks first, then reads: each member's row (here), then the row of
    each live rule that may award (lock_live_rules), each in id order (no lock cycles),
    until commit. A reversal takes rule rows only, in the same order. FOR NO KEY
    UPDATE, so inserts that merely reference the rows (actions, awards, postings) and
    spenders (who lock the member's account) are not blocked. On SQLite this renders
    nothing: BEGIN IMMEDIATE already lets one writer in at a time. Returns the locked
    members' rows (id, ward, joined_at, erased_at), read under the lock."""
    postgres = is_postgres(session)
    members: dict[uuid.UUID, Row[Any]] = {}
    for condition in _one_of(postgres, Member.id, member_ids):
        for row in session.execute(
            select(Member.id, Member.ward, Member.joined_at, Member.erased_at,
                   Member.travel_data_withheld)
            .where(condition)
            .order_by(Member.id)
            .with_for_update(key_share=True)
        ):
            members[row.id] = row
    return members


def lock_live_rules(session: Session, type_codes: Collection[str]) -> RuleSet:
    """Lock the rows of the live rules for these action types (only those: a leisure
    centre's batch does not wait on a bus operator's rules), then return the live rules
    as they stand once the locks are held. An edit or status change locks its rule's
    row too, so one that committed while this waited is seen: no batch awards under a
    version, or without a budget, that is no longer live. A rule that became live for
    these types only meanwhile is left out: its row is not locked (locking it now would
    break the id order), and it applies from the next batch."""
    postgres = is_postgres(session)

    def for_types(rules: Sequence[CompiledRule]) -> set[uuid.UUID]:
        return {uuid.UUID(rule.spec.rule_id) for rule in rules
                if not set(type_codes).isdisjoint(rule.spec.action_types)}

    before = live_rules(session)
    locked = for_types(before)
    lock_rules(session, locked, postgres)
    rules = live_rules(session)
    if rules is not before:
        late = for_types(rules) - locked
        if late:
            rules = RuleSet(rule for rule in rules if uuid.UUID(rule.spec.rule_id) not in late)
    return rules


def lock_rules(session: Session, rule_ids: Iterable[uuid.UUID],
               postgres: bool | None = None) -> None:
    """Row locks on the rules, in id order, until commit (see lock_for_awards)."""
    if postgres is None:
        postgres = is_postgres(session)
    for condition in _one_of(postgres, Rule.id, set(rule_ids)):
        session.execute(
            select(Rule.id).where(condition).order_by(Rule.id).with_for_update(key_share=True)
        )


@dataclass
class Accepted:
    """An item that will be recorded, with what evaluating it needs."""

    item: Item
    member_id: uuid.UUID
    action_id: uuid.UUID
    plans: list[RulePlan]  # the live rules that apply to it
    windows: dict[str, datetime]  # period -> start of the window it falls in


NO_CONSENT = "no_consent: the member has withdrawn consent to travel data"


def _ingest(session: Session, source: Source, items: Sequence[Any]) -> BatchOutcome:
    config = current_app.config
    tz = config["SCHEME_TIMEZONE"]
    zone = ZoneInfo(tz)
    postgres = is_postgres(session)
    now = utcnow()
    # A source may have its own, usually shorter, limit on how old an item may be.
    max_age_days = getattr(source, "max_age_days", None)
    limits = Limits(
        max_future=timedelta(seconds=config["ACTION_MAX_FUTURE_SECONDS"]),
        max_age=timedelta(days=config["ACTION_MAX_AGE_DAYS"] if max_age_days is None
                          else max_age_days),
    )
    type_ids: dict[str, uuid.UUID] = {}
    travel_types: set[str] = set()  # refused for members who withdrew travel consent
    for code, type_id, category in session.execute(
            select(ActionType.code, ActionType.id, ActionType.category)):
        type_ids[code] = type_id
        if category == "travel":
            travel_types.add(code)
    known_types = set(type_ids)
    allowed = set(source.action_types or ()) & known_types

    results: list[dict[str, Any]] = [{} for _ in items]
    valid: list[Item] = []
    for index, raw in enumerate(items):
        checked = validate_item(index, raw, allowed, now, limits, known_types)
        if isinstance(checked, str):
            ref = raw.get("external_ref") if isinstance(raw, Mapping) else None
            results[index] = _result(ref if isinstance(ref, str) else None, "rejected",
                                     reason=checked)
        else:
            valid.append(checked)

    # Members: by keyed hash of the card (one hash per distinct card), or by id.
    card_hashes = {card: card_hash(*card) for card in {item.card for item in valid if item.card}}
    card_members: dict[str, uuid.UUID] = {}
    for condition in _one_of(postgres, Identifier.number_hash, set(card_hashes.values())):
        for number_hash, member_id in session.execute(
            select(Identifier.number_hash, Identifier.member_id).where(condition)
        ):
            card_members[number_hash] = member_id
    # While IDENTIFIER_KEY rotates, cards still under the previous key (re-hashed now).
    card_members.update(rehash_cards(session, {card for card, digest in card_hashes.items()
                                               if digest not in card_members}))
    wanted = {item.member_id for item in valid if item.member_id} | set(card_members.values())

    # Locks first, then every read that decides (members, duplicates, caps, budgets)
    # sees what concurrent batches committed.
    members = {member_id: row for member_id, row in lock_for_awards(session, wanted).items()
               if row.erased_at is None}
    rules = lock_live_rules(session, {item.type_code for item in valid})

    # Duplicates: already recorded from this source, or repeated within the batch.
    seen: dict[str, uuid.UUID] = {}
    for condition in _one_of(postgres, Action.external_ref, {i.external_ref for i in valid}):
        for ref, action_id in session.execute(
            select(Action.external_ref, Action.id).where(Action.source_id == source.id,
                                                         condition)
        ):
            seen[ref] = action_id

    # Each ref's first item is the one that counts; the rest repeat it. First items go
    # in time order (so caps fall on the latest actions), repeats after them.
    firsts: list[Item] = []
    repeats: list[Item] = []
    refs_in_batch: set[str] = set()
    for item in valid:
        (repeats if item.external_ref in refs_in_batch else firsts).append(item)
        refs_in_batch.add(item.external_ref)

    plans = rule_plans(rules)
    plans_by_type: dict[str, list[RulePlan]] = {}
    for plan in plans.values():
        for type_code in plan.rule.spec.action_types:
            plans_by_type.setdefault(type_code, []).append(plan)
    bounds: dict[tuple[str, date], tuple[datetime, datetime]] = {}
    writes = Writes(now)
    accepted: list[Accepted] = []
    recorded_here: set[str] = set()
    wanted_windows: dict[WindowKey, datetime] = {}  # the cap use to read, with window ends
    budgeted: set[str] = set()
    for item in sorted(firsts, key=lambda i: i.occurred_at) + repeats:
        ref = item.external_ref
        if ref in seen:
            reason = ("repeats an earlier item of this batch" if ref in recorded_here
                      else "already received from this source")
            results[item.index] = _result(ref, "duplicate", seen[ref], reason)
            continue
        if item.card:
            member_id = card_members.get(card_hashes[item.card])
            reason = f"unknown card: no member has linked this {item.card[0]}"
        else:
            member_id = item.member_id
            reason = "unknown member_id: no member has this id"
        if member_id is None or member_id not in members:
            results[item.index] = _result(ref, "rejected", reason=reason)
            continue
        if item.type_code in travel_types and members[member_id].travel_data_withheld:
            results[item.index] = _result(ref, "rejected", reason=NO_CONSENT)
            continue
        action_id = writes.new_id()
        seen[ref] = action_id
        recorded_here.add(ref)
        applicable = [plan for plan in plans_by_type.get(item.type_code, ())
                      if plan.rule.applies_to(item.type_code, item.occurred_at)]
        windows: dict[str, datetime] = {}
        local_day = item.occurred_at.astimezone(zone).date()
        for plan in applicable:
            for period in plan.periods:
                # A window depends only on the local date the action falls on.
                window = bounds.get((period, local_day))
                if window is None:
                    window = bounds[(period, local_day)] = period_bounds(item.occurred_at,
                                                                         period, tz)
                windows[period] = window[0]
                wanted_windows[(member_id, plan.rule.spec.rule_id, period, window[0])] = (
                    window[1])
            if plan.rule.spec.budget_points is not None:
                budgeted.add(plan.rule.spec.rule_id)
        accepted.append(Accepted(item, member_id, action_id, applicable, windows))

    book = UsageBook()
    book.load(session, postgres, wanted_windows, budgeted)
    totals = actions_totals(session, postgres, members, rules)
    # Controls before points (too many in an hour, implausible travel): the members'
    # stored actions nearby, read under the member locks, then each action in turn.
    controls = control_book(session, [(work.member_id, work.item.type_code,
                                       work.item.occurred_at, work.item.attributes)
                                      for work in accepted])
    outcome = BatchOutcome(results)
    facts: dict[uuid.UUID, dict[str, Any]] = {}
    stamp = now - _TICK
    for work in accepted:
        # Rows are stamped when made, strictly increasing in the order actions are taken,
        # so lists ordered by created_at (the review queue, statements) keep that order.
        stamp = max(utcnow(), stamp + _TICK)
        item = work.item
        held = controls.check(work.member_id, item.type_code, item.occurred_at,
                              item.attributes)
        if held is not None:
            # Held for review: stored flagged, no rule runs until a reviewer approves.
            writes.actions.append(action_row(work, source.id, type_ids[item.type_code],
                                             stamp, "flagged", held, 0))
            outcome.accepted += 1
            results[item.index] = _result(item.external_ref, "accepted", work.action_id,
                                          reason=held, points=0)
            continue
        member_id = work.member_id
        member = facts.get(member_id)
        if member is None or totals is not None:
            row = members[member_id]
            member = facts[member_id] = member_facts(
                row.ward, row.joined_at, now, 0 if totals is None else totals.get(member_id, 0))
        points, status = award_points(work, member, book, rules, plans, source.id,
                                      type_ids[work.item.type_code], now, tz, writes,
                                      created_at=stamp)
        if totals is not None and status == "accepted":
            totals[member_id] = totals.get(member_id, 0) + 1
        outcome.accepted += 1
        outcome.points += points
        results[work.item.index] = _result(work.item.external_ref, "accepted",
                                           work.action_id, points=points)
    writes.save(session, postgres)
    return outcome


def actions_totals(
    session: Session, postgres: bool, members: Mapping[uuid.UUID, Any],
    rules: Sequence[CompiledRule],
) -> dict[uuid.UUID, int] | None:
    """Each member's accepted actions so far (`member.actions_total`, counted forward
    through the batch), read under the member locks; None, and no query, when no live
    rule mentions it: it costs a count over each member's whole history."""
    if not any("actions_total" in rule.spec.condition or "actions_total" in rule.spec.points
               for rule in rules):
        return None
    totals: dict[uuid.UUID, int] = {}
    for condition in _one_of(postgres, Action.member_id, members):
        for member_id, count in session.execute(
            select(Action.member_id, func.count(Action.id))
            .where(condition, Action.status == "accepted").group_by(Action.member_id)
        ):
            totals[member_id] = int(count)
    return totals


@dataclass
class _Earn:
    """Points one action earned under the rules sharing one hold, posted together from
    scheme issuance to the member's account: one posting (one lot) per action and
    hold, however many rules stacked on it."""

    posting_id: uuid.UUID
    action_id: uuid.UUID
    member_id: uuid.UUID
    hold_days: int
    created_at: datetime
    key_rule_id: str  # the first of its rules: the posting's key names it
    points: int = 0
    reasons: list[str] = field(default_factory=list)


_TICK = timedelta(microseconds=1)


@dataclass
class Writes:
    """The rows a batch writes, kept as plain dicts and inserted table by table,
    many rows a statement: no ORM objects, no unit-of-work flushes."""

    now: datetime  # when the batch is evaluated
    actions: list[dict[str, Any]] = field(default_factory=list)
    awards: list[dict[str, Any]] = field(default_factory=list)
    earns: list[_Earn] = field(default_factory=list)
    new_id: IdPool = field(default_factory=IdPool)

    def save(self, session: Session, postgres: bool) -> None:
        postings: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        if self.earns:
            issuance = scheme_account(session, "scheme:issuance").id
            # Accounts by code, as ledger.member_account finds them.
            codes = [f"member:{earn.member_id}:{'pending' if earn.hold_days else 'available'}"
                     for earn in self.earns]
            accounts: dict[str, uuid.UUID] = {}
            for condition in _one_of(postgres, Account.code, set(codes)):
                for code, account_id in session.execute(
                    select(Account.code, Account.id).where(condition)
                ):
                    accounts[code] = account_id
            # The batch's points take its terms: held and expiring from when it was
            # evaluated (one reckoning per hold, not one per posting).
            terms: dict[int, tuple[datetime, datetime | None]] = {}
            for earn, code in zip(self.earns, codes, strict=True):
                target = accounts.get(code)
                if target is None:
                    raise LedgerError(f"no account {code}")
                if earn.hold_days not in terms:
                    terms[earn.hold_days] = earn_terms(self.now, earn.hold_days)
                earn_posting(postings, lines, earn, issuance, target, terms[earn.hold_days],
                             self.new_id)
        # Parents before children: awards point at postings, postings at actions.
        for table, rows in ((Action.__table__, self.actions), (Posting.__table__, postings),
                            (PostingLine.__table__, lines), (Award.__table__, self.awards)):
            if rows:
                insert_rows(session, table, rows, postgres)
        totals: dict[uuid.UUID, int] = {}
        for award in self.awards:
            totals[award["rule_id"]] = totals.get(award["rule_id"], 0) + award["points"]
        add_points_awarded(session, totals)


# (database, table) -> column -> type name: what binary COPY must be told to send.
_column_types: dict[tuple[str, str], dict[str, str]] = {}
_COLUMN_TYPES_SQL = (
    "SELECT a.attname, t.typname FROM pg_attribute AS a JOIN pg_type AS t "
    "ON t.oid = a.atttypid WHERE a.attrelid = CAST(%s AS regclass) AND a.attnum > 0 "
    "AND NOT a.attisdropped"
)


def _types_of(driver: Any, table: str, columns: Sequence[str]) -> list[str]:
    key = (driver.info.dbname, table)
    known = _column_types.get(key)
    if known is None or any(column not in known for column in columns):
        known = _column_types[key] = dict(driver.execute(_COLUMN_TYPES_SQL, (table,)))
    return [known[column] for column in columns]


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]],
                postgres: bool | None = None) -> None:
    """Insert many rows (all with the same keys, in the same order) in the session's
    transaction. On PostgreSQL through binary COPY, its bulk-loading path: every
    constraint, index and trigger applies as for INSERT, and errors come back as
    SQLAlchemy's (IntegrityError on a unique key), so callers handle them alike; the
    server reads binary ids and times several microseconds a row faster than text.
    Elsewhere one executemany INSERT."""
    if postgres is None:
        postgres = is_postgres(session)
    connection = session.connection()
    if not postgres:
        connection.execute(insert(table), list(rows))
        return
    import psycopg

    columns = list(rows[0])
    quote = connection.dialect.identifier_preparer.quote
    statement = (f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
                 "FROM STDIN (FORMAT BINARY)")
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        types = _types_of(driver, table.name, columns)
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(types)  # JSON columns take the Python values, as SQLAlchemy's do
            write = copy.write_row
            for row in rows:
                write(tuple(row.values()))
    except psycopg.Error as error:
        raise DBAPIError.instance(statement, None, error, psycopg.Error) from error


def earn_posting(
    postings: list[dict[str, Any]],
    lines: list[dict[str, Any]],
    earn: _Earn,
    issuance: uuid.UUID,
    target: uuid.UUID,
    terms: tuple[datetime, datetime | None],
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> None:
    """The one place awarded points are posted: issuance to the member's account, as a
    balanced posting with a key that makes a retried award post nothing twice.
    `terms`: (available_at, expires_at), from ledger.earn_terms."""
    entries = [(issuance, -earn.points), (target, earn.points)]
    check_balanced(entries)
    available_at, expires_at = terms
    postings.append({
        "id": earn.posting_id,
        "created_at": earn.created_at,
        "kind": "earn",
        "reason": " + ".join(earn.reasons),
        "key": f"award:{earn.action_id}:{earn.key_rule_id}",
        "member_id": earn.member_id,
        "action_id": earn.action_id,
        "reward_id": None,
        "available_at": available_at,
        "expires_at": expires_at,
        "origin_id": None,
    })
    lines.extend({"id": new_id(), "posting_id": earn.posting_id, "account_id": account,
                  "points": points, "created_at": earn.created_at}
                 for account, points in entries)


def award_points(
    work: Accepted,
    member: Mapping[str, Any],
    book: UsageBook,
    rules: Sequence[CompiledRule],
    plans: Mapping[str, RulePlan],
    source_id: uuid.UUID,
    action_type_id: uuid.UUID,
    now: datetime,
    tz: str,
    writes: Writes,
    created_at: datetime | None = None,
    skip_rules: Collection[uuid.UUID] = (),
) -> tuple[int, str]:
    """Evaluate the live `rules` on one action and add its action row, awards and
    postings to `writes`; returns the points awarded and the action's status.
    `work.plans` are the rules that apply to it: with none, the engine is not asked.
    Its rows are stamped `created_at` (default `now`, the time the rules see). Rules
    in `skip_rules` (by rule id) awarded it before: they write nothing now."""
    stamp = now if created_at is None else created_at
    item, member_id = work.item, work.member_id
    status, flag_reason = "accepted", None
    total = 0
    if work.plans:
        context = build_context(item.type_code, item.occurred_at, item.attributes, member,
                                now, tz)
        usage = book.usage_for(member_id, work.plans, work.windows)
        try:
            evaluation = evaluate(rules, item.type_code, item.occurred_at, context, usage)
        except Exception as error:  # noqa: BLE001 - the engine failed outside any one rule
            log.exception("rules engine failed on action %s", work.action_id)
            message = f"{type(error).__name__}: {str(error)[:200]}"
            evaluation = Evaluation(errors=[(plan.rule.spec, message) for plan in work.plans])
        for decision in list(evaluation.decisions):
            if decision.points > MAX_AWARD_POINTS:
                evaluation.decisions.remove(decision)
                evaluation.errors.append((decision.spec, (
                    f"points formula gave {decision.points}, more than one award may give "
                    f"({MAX_AWARD_POINTS})")))
        if evaluation.errors:
            log_rule_failures(evaluation.errors, work.action_id)
            status = "flagged"
            flag_reason = "; ".join(f"rule {spec.name} v{spec.version} failed: {message}"
                                    for spec, message in evaluation.errors)
        earns: dict[int, _Earn] = {}  # by hold_days
        for decision in evaluation.decisions:
            spec = decision.spec
            plan = plans[spec.version_id]
            if plan.rule_id in skip_rules:
                continue
            posting_id = None
            if decision.points > 0:
                earn = earns.get(spec.hold_days)
                if earn is None:
                    earn = earns[spec.hold_days] = _Earn(
                        writes.new_id(), work.action_id, member_id, spec.hold_days, stamp,
                        spec.rule_id)
                    writes.earns.append(earn)
                earn.points += decision.points
                earn.reasons.append(f"{spec.name} v{spec.version}")
                posting_id = earn.posting_id
                book.record(member_id, plan, decision.points, work.windows)
                total += decision.points
            writes.awards.append({
                "id": writes.new_id(),
                "created_at": stamp,
                "action_id": work.action_id,
                "member_id": member_id,
                "rule_id": plan.rule_id,
                "rule_version_id": plan.version_id,
                "rule_version": spec.version,
                "rule_name": spec.name,
                "points": decision.points,
                "capped_by": decision.capped_by,
                "occurred_at": item.occurred_at,
                "inputs": decision.inputs,
                "posting_id": posting_id,
                "revoked_at": None,
                "points_written_off": 0,
            })
    writes.actions.append(action_row(work, source_id, action_type_id, stamp, status,
                                     flag_reason, total))
    return total, status


def action_row(work: Accepted, source_id: uuid.UUID | None, action_type_id: uuid.UUID,
               created_at: datetime, status: str, flag_reason: str | None,
               points: int) -> dict[str, Any]:
    item = work.item
    return {
        "id": work.action_id,
        "created_at": created_at,
        "source_id": source_id,
        "external_ref": item.external_ref,
        "member_id": work.member_id,
        "action_type_id": action_type_id,
        "type_code": item.type_code,
        "occurred_at": item.occurred_at,
        "attributes": item.attributes,
        "status": status,
        "flag_reason": flag_reason,
        "points": points,
    }


def _result(
    ref: str | None,
    status: str,
    action_id: uuid.UUID | None = None,
    reason: str | None = None,
    points: int | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "external_ref": ref,
        "status": status,
        "action_id": str(action_id) if action_id else None,
        "reason": reason,
    }
    if points is not None:
        result["points"] = points
    return result

"""The shape of ingest's work: a batch costs a fixed handful of statements whatever its
size, and counting caps in memory across a batch awards exactly what one action a
batch would. Also: text that is not Unicode is a rejected item, not a 500."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import rewards.awarding.locks
import rewards.jobs
from rewards.bulk import insert_rows
from rewards.extensions import db
from rewards.models import Account, Action, Award, PostingLine, Rule, RuleVersion
from rewards.security import signature_header

from .helpers import (
    Scheme,
    at_once,
    bearer,
    build_scheme,
    iso,
    link,
    member_token,
    postgres_only,
    signed_post,
    tap,
)


def _daytime(days_ago: int, hour: int, minute: int = 0) -> datetime:
    local = datetime.now(ZoneInfo("Europe/London")) - timedelta(days=days_ago)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0).astimezone(UTC)


def _resident(client: FlaskClient, app: Flask, email: str, card: str) -> str:
    token = member_token(client, app, email)
    linked = link(client, app, bearer(token), card)
    assert linked.status_code == 201, linked.json
    return client.get("/v1/me", headers=bearer(token)).json["id"]


@contextmanager
def _statements() -> Iterator[list[str]]:
    """The SQL statements run through the engine while inside."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def _add_rule(client: FlaskClient, scheme: Scheme, **body: Any) -> dict[str, Any]:
    body = {"action_types": ["bus_journey"], "status": "active",
            "starts_at": iso(datetime.now(UTC) - timedelta(days=30)), **body}
    response = client.post("/v1/admin/rules", json=body, headers=bearer(scheme.admin))
    assert response.status_code == 201, response.json
    return response.json


def test_a_batch_takes_the_same_statements_whatever_its_size(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Jobs a batch leaves in the outbox (the members' points notices) are a worker's
    # statements, not the batch's: here they stay in the outbox.
    monkeypatch.setattr(rewards.jobs, "dispatch_pending", rewards.jobs.discard_pending)
    scheme = build_scheme(client, app)
    _add_rule(client, scheme, name="Launch", points="2", budget_points=100_000)
    cards = [f"6335 0000 0000 {n:04d}" for n in range(3)]
    for n, card in enumerate(cards):
        _resident(client, app, f"shape{n}@example.org", card)

    def batch(prefix: str, size: int) -> dict[str, Any]:
        # The same three days whatever the size: the cap windows read are the same.
        return {"items": [tap(f"{prefix}-{n}", cards[n % 3], _daytime(1 + n % 3, 6 + n % 17,
                                                                      n % 60))
                          for n in range(size)]}

    counts = []
    # The first batch also makes the scheme's issuance account: leave it out.
    for prefix, size in (("first", 5), ("small", 5), ("large", 400)):
        with app.app_context(), _statements() as seen:
            response = signed_post(client, scheme.source, batch(prefix, size))
        assert response.status_code == 200, response.json
        assert {r["status"] for r in response.json["results"]} == {"accepted"}
        counts.append(len(seen))
    _, small, large = counts
    # Reads, locks and one multi-row write per table: no statement per item.
    assert large == small, (small, large)
    assert large <= 30, large


def _balances(app: Flask, member_id: str) -> dict[str, int]:
    with app.app_context():
        rows = db.session.execute(
            select(Account.kind, func.coalesce(func.sum(PostingLine.points), 0))
            .join(PostingLine, PostingLine.account_id == Account.id, isouter=True)
            .where(Account.member_id == uuid.UUID(member_id))
            .group_by(Account.kind)
        ).all()
    return {kind: int(total) for kind, total in rows}


def _awards(app: Flask, action_ids: list[str]) -> list[list[tuple[str, int, str | None]]]:
    with app.app_context():
        rows = db.session.execute(
            select(Award.action_id, Award.rule_name, Award.points, Award.capped_by)
        ).all()
    by_action: dict[str, list[tuple[str, int, str | None]]] = {}
    for action_id, name, points, capped_by in rows:
        by_action.setdefault(str(action_id), []).append((name, points, capped_by))
    return [sorted(by_action.get(action_id, [])) for action_id in action_ids]


def test_one_batch_awards_what_one_action_a_batch_would(
    client: FlaskClient, app: Flask
) -> None:
    """Caps read once per batch and counted forward in memory give the awards that
    reading them from the stored awards before every action gives."""
    scheme = build_scheme(client, app, per_day=3)
    _add_rule(client, scheme, name="Weekly points", points="action.hour >= 19 ? 6 : 4",
              points_caps={"per_week": 23}, hold_days=2)
    _add_rule(client, scheme, name="Monthly", points="1", caps={"per_month": 9})
    _add_rule(client, scheme, name="Evenings only", points="50", priority=10,
              stackable=False, condition="action.hour >= 22", caps={"lifetime": 2})
    together = [_resident(client, app, f"one{n}@example.org", f"7100 0000 0000 000{n}")
                for n in range(2)]
    apart = [_resident(client, app, f"many{n}@example.org", f"7200 0000 0000 000{n}")
             for n in range(2)]

    moments = sorted(_daytime(days, hour, minute) for days in (1, 2, 3, 9, 10)
                     for hour, minute in ((7, 5), (8, 40), (12, 0), (19, 30), (22, 15)))

    def items(prefix: str) -> list[dict[str, Any]]:
        return [tap(f"{prefix}-{n}-{m}", f"{prefix} 0000 0000 000{m}", when)
                for n, when in enumerate(moments) for m in range(2)]

    one = signed_post(client, scheme.source, {"items": items("7100")})
    assert one.status_code == 200, one.json
    one_results = one.json["results"]
    many_results = []
    for item in items("7200"):
        answer = signed_post(client, scheme.source, {"items": [item]})
        assert answer.status_code == 200, answer.json
        many_results += answer.json["results"]

    assert {r["status"] for r in one_results + many_results} == {"accepted"}
    assert [r["points"] for r in one_results] == [r["points"] for r in many_results]
    one_awards = _awards(app, [r["action_id"] for r in one_results])
    assert one_awards == _awards(app, [r["action_id"] for r in many_results])
    capped = {capped_by for awards in one_awards for _, _, capped_by in awards}
    assert {"per_day", "points_per_week", "per_month", "lifetime"} <= capped, capped
    for mine, theirs in zip(together, apart, strict=True):
        balances = _balances(app, mine)
        assert balances == _balances(app, theirs)
        assert balances["pending"] > 0 and balances["available"] > 0


def test_a_repeated_ref_written_in_bulk_is_an_integrity_error(
    client: FlaskClient, app: Flask
) -> None:
    """What makes a batch that lost a race retry: the bulk write (COPY on PostgreSQL)
    reports the unique key as SQLAlchemy's IntegrityError, as an INSERT does."""
    scheme = build_scheme(client, app)
    card = "6335 0012 3456 7890"
    _resident(client, app, "amira@example.org", card)
    first = signed_post(client, scheme.source, {"items": [tap("race", card, _daytime(1, 9))]})
    assert first.json["results"][0]["status"] == "accepted"
    with app.app_context():
        session = db.session
        stored = session.get(Action, uuid.UUID(first.json["results"][0]["action_id"]))
        row = {column.name: getattr(stored, column.key) for column in Action.__table__.c}
        session.rollback()
        with pytest.raises(IntegrityError):
            insert_rows(session, Action.__table__, [{**row, "id": uuid.uuid4()}])
        session.rollback()


def _post_at_once(app: Flask, source: dict[str, Any], bodies: list[Any]) -> list[Any]:
    """Each body from its own thread and client, released together."""
    return at_once(app, len(bodies), lambda client, n: signed_post(client, source, bodies[n]))


def _send_the_same_refs_at_once(client: FlaskClient, app: Flask, scheme: Scheme,
                                who: str) -> None:
    """Three rounds of two batches at once, the same 40 refs for two members: each
    round records 40 and reports 40 duplicates."""
    cards = [f"6335 0012 3456 {who}", f"6335 0098 7654 {who}"]
    for n, card in enumerate(cards):
        _resident(client, app, f"race{who}{n}@example.org", card)
    for round_ in range(3):
        bodies = [{"items": [tap(f"{who}-{round_}-{n}", card, _daytime(1 + round_, 8, n))
                             for n in range(40)]} for card in cards]
        answers = _post_at_once(app, scheme.source, bodies)
        assert all(answer is not None and answer.status_code == 200 for answer in answers)
        statuses = [r["status"] for answer in answers for r in answer.json["results"]]
        assert statuses.count("accepted") == 40 and statuses.count("duplicate") == 40
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Action)) == 120
        sums = db.session.execute(
            select(func.sum(PostingLine.points)).group_by(PostingLine.posting_id)).scalars()
        assert set(sums) <= {0}


def test_same_refs_for_different_members_at_once_are_counted_once(
    client: FlaskClient, app: Flask
) -> None:
    """Two batches carrying the same refs for different members: one is recorded, the
    other reports duplicates. Both lock the live rules' rows, so one waits and then
    sees the refs."""
    _send_the_same_refs_at_once(client, app, build_scheme(client, app), "7890")


def test_same_refs_at_once_with_no_lock_in_common_lose_on_the_key_and_retry(
    client: FlaskClient, app: Flask
) -> None:
    """With no live rule the two batches share no lock: both pass the duplicate check,
    one loses on the unique key in its bulk write, retries, and reports duplicates."""
    scheme = build_scheme(client, app)
    retired = client.post(f"/v1/admin/rules/{scheme.rule['id']}/retire",
                          headers=bearer(scheme.admin))
    assert retired.status_code == 200, retired.json
    _send_the_same_refs_at_once(client, app, scheme, "7893")


def test_member_actions_total_counts_accepted_actions_before_this_one(
    client: FlaskClient, app: Flask
) -> None:
    """`member.actions_total` (accepted actions so far) in a live rule: counted from the
    stored actions and forward through the batch, in the order actions are taken."""
    scheme = build_scheme(client, app, per_day=10)
    _add_rule(client, scheme, name="Welcome", condition="member.actions_total < 3",
              points="100")
    card = "6335 0012 3456 7890"
    member_id = _resident(client, app, "amira@example.org", card)
    first = signed_post(client, scheme.source, {"items": [
        tap(f"w-{n}", card, _daytime(2, 8 + n)) for n in range(2)]})
    second = signed_post(client, scheme.source, {"items": [
        tap(f"w-{n}", card, _daytime(1, 8 + n)) for n in range(2, 4)]})
    points = [r["points"] for r in first.json["results"] + second.json["results"]]
    assert points == [110, 110, 110, 10]
    assert _balances(app, member_id)["available"] == 340


def test_text_that_is_not_unicode_is_rejected_not_a_500(
    client: FlaskClient, app: Flask
) -> None:
    """JSON can escape half a surrogate pair on its own; Python keeps it, but it cannot
    be hashed, stored as UTF-8 or put in PostgreSQL."""
    scheme = build_scheme(client, app)
    card = "6335 0012 3456 7890"
    _resident(client, app, "amira@example.org", card)
    when = _daytime(1, 10)
    raw = json.dumps({"items": [
        {**tap("half-attr", card, when), "attributes": {"route": "\ud800"}},
        tap("half-ref-\udc00", card, when),
        {**tap("half-key", card, when), "attributes": {"\ud83d": 1}},
        {**tap("half-card", card, when), "member": {"kind": "travel_card",
                                                    "number": "6335\udfff"}},
        {**tap("half-kind", card, when), "member": {"kind": "travel\ud800", "number": "1"}},
        {**tap("whole", card, when), "attributes": {"route": "\U0001f68c \u00e9"}},
    ]}).encode()
    assert b"\\ud800" in raw
    source = scheme.source
    response = client.post("/v1/source/actions", data=raw, content_type="application/json",
                           headers={"X-Api-Key": source["api_key"],
                                    "X-Signature": signature_header(source["signing_secret"],
                                                                    raw)})
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert [r["status"] for r in results] == ["rejected"] * 5 + ["accepted"]
    assert all("Unicode" in r["reason"] for r in results[:5]), results
    assert "attributes.route" in results[0]["reason"]
    assert "external_ref" in results[1]["reason"]
    assert "member" in results[3]["reason"] and "member" in results[4]["reason"]


def test_a_batch_locks_only_the_rules_for_its_action_types(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leisure centre's batch goes through while a bus batch holds the bus rule's row
    (here: another transaction holding it); one that needs that row waits for it. The
    wait is cut short by lock_timeout, so the test tells them apart without timing."""
    postgres_only(app, "SQLite lets one writer in at a time: there are no row locks")
    scheme = build_scheme(client, app)
    admin = bearer(scheme.admin)
    made = client.post("/v1/admin/action-types", headers=admin, json={
        "code": "leisure_visit", "name": "Leisure centre visit", "category": "health"})
    assert made.status_code == 201, made.json
    _add_rule(client, scheme, name="Leisure visit", action_types=["leisure_visit"],
              points="20", caps={"per_day": 1})
    leisure = client.post("/v1/admin/sources", headers=admin, json={
        "name": "Leeds Leisure", "action_types": ["leisure_visit"]})
    assert leisure.status_code == 201, leisure.json
    card = "6335 0012 3456 7894"
    _resident(client, app, "swim@example.org", card)

    real = rewards.awarding.locks.lock_rules

    def impatient(session: Any, rule_ids: Any, postgres: Any = None) -> None:
        session.execute(text("SET LOCAL lock_timeout = '2s'"))
        real(session, rule_ids, postgres)

    monkeypatch.setattr(rewards.awarding.locks, "lock_rules", impatient)
    with app.app_context(), db.engine.connect() as bus_batch:
        bus_batch.execute(text("SELECT id FROM rules WHERE id = :id FOR NO KEY UPDATE"),
                          {"id": scheme.rule["id"]})
        visit = signed_post(client, leisure.json, {"items": [
            tap("swim-1", card, _daytime(1, 9), type_code="leisure_visit")]})
        assert visit.status_code == 200, visit.json
        assert [(r["status"], r["points"]) for r in visit.json["results"]] == [("accepted", 20)]
        journey = signed_post(client, scheme.source, {"items": [tap("bus-1", card,
                                                                    _daytime(1, 10))]})
        assert journey.status_code >= 500  # it needed the bus rule's row and gave up waiting
        bus_batch.rollback()
    with app.app_context():
        assert set(db.session.scalars(select(Action.external_ref))) == {"swim-1"}


def test_a_batch_waiting_on_a_rule_edit_awards_under_the_new_version(
    client: FlaskClient, app: Flask
) -> None:
    """A batch reads the live rules, then waits on a rule's row while staff edit it (a
    budget of 10 points). Once the edit commits, the batch goes on under the version
    now live: it awards 10 points, not 10 for each of its five journeys."""
    postgres_only(app, "SQLite lets one writer in at a time: a batch never waits on an edit")
    scheme = build_scheme(client, app, per_day=10)
    card = "6335 0012 3456 7895"
    _resident(client, app, "edit@example.org", card)
    rule_id = uuid.UUID(scheme.rule["id"])
    items = [tap(f"e-{n}", card, _daytime(1, 8 + n)) for n in range(5)]
    with app.app_context():
        with Session(db.engine) as staff:
            rule = staff.get(Rule, rule_id, with_for_update=True)  # as an edit does
            answers = _post_in_background(app, scheme.source, {"items": items})
            _wait_for_a_lock_wait()
            current = staff.scalars(select(RuleVersion).where(
                RuleVersion.rule_id == rule_id,
                RuleVersion.version == rule.current_version)).one()
            copied = {c.key: getattr(current, c.key) for c in RuleVersion.__table__.c
                      if c.key not in ("id", "version", "created_at")}
            rule.current_version += 1
            staff.add(RuleVersion(**{**copied, "version": rule.current_version,
                                     "budget_points": 10}))
            staff.commit()
        answer = answers.result(timeout=60)
    assert answer.status_code == 200, answer.json
    assert [r["points"] for r in answer.json["results"]] == [10, 0, 0, 0, 0]
    with app.app_context():
        assert db.session.scalar(select(Rule.points_awarded).where(Rule.id == rule_id)) == 10


def _post_in_background(app: Flask, source: dict[str, Any], body: Any) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(lambda: signed_post(app.test_client(), source, body))
    pool.shutdown(wait=False)
    return future


def _wait_for_a_lock_wait() -> None:
    """Until some other backend of this database waits on a lock (the batch, on the
    rule's row). Polls the server's own view; no sleep decides the outcome."""
    for _ in range(600):
        with db.engine.connect() as probe:
            waiting = probe.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"))
        if waiting:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the batch never waited on the rule's row")

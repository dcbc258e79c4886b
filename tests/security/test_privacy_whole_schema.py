"""Data protection over the whole schema, not a list of known columns: a resident who used
every feature is erased, then every table and column the database has (reflected, so a
table added later is covered without editing this file), the rate-limit counters, and
every log line written on the way are searched for what was personal to them."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import MetaData, select

from rewards.extensions import db
from rewards.members import otp_address
from rewards.models.member import Identifier
from rewards.models.review import SelfReportPhoto

from ..helpers import bearer, build_scheme, iso, link_code_for, signed_post, staff_token
from ..reward_support import add_ward, make_partner, till
from ..test_flow import _daytime

OLD_EMAIL = "quentin.zephyrine@leeds.gov.uk"
NEW_EMAIL = "q.zephyrine.new@leeds.gov.uk"
NAME = "Quentin Zephyrine"
WARD = "Headingley"
BIRTH_YEAR = 1979
CARD = "6335 9911 2233 4455"
PUSH_TOKEN = "fcm-zephyrine-push-token-0001"
ADDRESS = "203.0.113.77"
USER_AGENT = "ZephyrinePhone/9.1 (distinctive agent)"
TAP_STOP = "Zephyrine Lane stop"
REPORT_TEXT = "Bags of litter behind 12 Zephyrine Crescent"
REJECTED_TEXT = "Litter at my house on Zephyrine Close"
PIN = "4820"


def _photo() -> bytes:
    image = Image.new("RGB", (9, 7), (12, 180, 64))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Trail:
    """What the resident's use of the scheme put into it: values personal to them."""

    member_id: str = ""
    secrets: set[str] = field(default_factory=set)   # must be found nowhere, ever
    erased: set[str] = field(default_factory=set)    # must be gone after erasure
    photos: list[bytes] = field(default_factory=list)
    # Login codes: six digits, searched for in logs only (stored values such as times
    # hold runs of six digits; the codes themselves are stored only as keyed hashes).
    codes: set[str] = field(default_factory=set)
    # Personal only beside the member's id (a ward, a year, a postcode district are
    # shared by many): no row naming the member may keep them.
    linked: set[str] = field(default_factory=lambda: {WARD, str(BIRTH_YEAR), PIN})
    export: dict[str, Any] = field(default_factory=dict)


def _mail_to(app: Flask, to: str) -> Any:
    return [m for m in app.extensions.get("sent_mail", []) if m["To"] == to][-1]


def _log_in(client: FlaskClient, app: Flask, email: str, trail: Trail) -> dict[str, str]:
    assert client.post("/v1/auth/otp", json={"email": email}).status_code == 202
    code = re.search(r"\b(\d{6})\b", _mail_to(app, email)["Subject"]).group(1)
    answer = client.post("/v1/auth/token", json={"email": email, "code": code})
    assert answer.status_code == 200, answer.json
    trail.secrets |= {answer.json["access_token"], answer.json["refresh_token"]}
    trail.codes.add(code)
    return bearer(answer.json["access_token"])


def _resident_everywhere(client: FlaskClient, app: Flask) -> Trail:
    """A resident who used every feature a resident can, from a distinctive address and
    app, with staff acting on them; what is personal to them is recorded on the way."""
    trail = Trail()
    client.environ_base.update({"REMOTE_ADDR": ADDRESS, "HTTP_USER_AGENT": USER_AGENT})
    scheme = build_scheme(client, app, cost_points=10)
    admin = bearer(scheme.admin)
    desk = bearer(staff_token(client, app, "desk"))
    charity = make_partner(client, admin, "Leeds Food Aid Network", kind="charity")
    for code, name in (("litter_pick", "Litter pick"), ("volunteer_session", "Volunteering")):
        assert client.post("/v1/admin/action-types", headers=admin, json={
            "code": code, "name": name, "category": "climate"}).status_code == 201

    me = _log_in(client, app, OLD_EMAIL, trail)
    trail.member_id = client.get("/v1/me", headers=me).json["id"]
    add_ward(app, WARD)
    assert client.patch("/v1/me", headers=me, json={
        "display_name": NAME, "ward": WARD, "birth_year": BIRTH_YEAR}).status_code == 200
    assert client.post("/v1/me/devices", headers=me, json={
        "platform": "fcm", "token": PUSH_TOKEN}).status_code in (200, 201)
    assert client.patch("/v1/me/notification-preferences", headers=me, json={
        "points_earned": {"email": True}}).status_code == 200
    assert client.put("/v1/me/consents", headers=me, json={"consents": [
        {"purpose": "research", "granted": True}]}).status_code == 200

    link_code = link_code_for(app, CARD)
    trail.secrets.add(link_code)
    linked = client.post("/v1/me/identifiers", headers=me, json={
        "kind": "travel_card", "number": CARD, "link_code": link_code})
    assert linked.status_code == 201, linked.json
    with app.app_context():
        card_hash = db.session.scalars(select(Identifier.number_hash)).one()
    trail.erased.add(card_hash)
    sent = signed_post(client, scheme.source, {"items": [
        {"external_ref": f"zephyrine-{i}", "member": {"kind": "travel_card", "number": CARD},
         "type": "bus_journey", "occurred_at": iso(_daytime(2, 10 + i)),
         "attributes": {"distance_km": 3.2, "stop": TAP_STOP, "lat": 53.8123, "lon": -1.5876}}
        for i in range(4)]})
    assert [r["status"] for r in sent.json["results"]] == ["accepted"] * 4, sent.json

    for text, verdict in ((REPORT_TEXT, "approve"), (REJECTED_TEXT, "reject")):
        report = client.post("/v1/me/self-reports", headers=me,
                             content_type="multipart/form-data", data={
                                 "type": "litter_pick", "description": text,
                                 "occurred_at": iso(datetime.now(UTC) - timedelta(hours=3)),
                                 "photo": (io.BytesIO(_photo()), "zephyrine.png")})
        assert report.status_code == 202, report.json
        decided = client.post(f"/v1/admin/reviews/{report.json['action_id']}/{verdict}",
                              headers=admin, json={"note": "Thank you"} if verdict == "approve"
                              else {"reason": "Not enough to go on"})
        assert decided.status_code == 200, decided.json
    with app.app_context():
        trail.photos = [bytes(row) for row in db.session.scalars(select(SelfReportPhoto.content))]
    assert len(trail.photos) == 2

    event = client.post("/v1/admin/events", headers=admin, json={
        "name": "Beach clean", "action_type": "volunteer_session",
        "starts_at": iso(datetime.now(UTC) - timedelta(hours=1)),
        "ends_at": iso(datetime.now(UTC) + timedelta(hours=2)), "attributes": {"hours": 2}})
    assert event.status_code == 201, event.json
    assert client.post("/v1/me/claims", headers=me,
                       json={"code": event.json["code"]}).status_code == 201

    redeemed = client.post("/v1/me/rewards", headers=me, json={"offer_id": scheme.offer["id"]})
    assert redeemed.status_code == 202, redeemed.json
    code = client.get(f"/v1/me/rewards/{redeemed.json['id']}", headers=me).json["code"]
    assert client.post("/v1/partner/redemptions", json={"code": code},
                       headers=till(scheme.partner)).status_code == 201
    held = client.post("/v1/me/rewards", headers={**me, "Idempotency-Key": "zephyrine-claim"},
                       json={"offer_id": scheme.offer["id"]})
    assert held.status_code == 202, held.json
    given = client.post("/v1/me/donations", headers={**me, "Idempotency-Key": "zephyrine-gift"},
                        json={"charity_id": charity["id"], "points": 5})
    assert given.status_code == 201, given.json

    member_path = f"/v1/admin/members/{trail.member_id}"
    assert client.get(member_path, headers=admin).status_code == 200
    assert client.post(f"{member_path}/adjustments", headers=admin, json={
        "points": 3, "reason": "Goodwill after a missed journey"}).status_code in (200, 201)
    assert client.post(f"{member_path}/pin", headers=desk, json={"pin": PIN}).status_code == 204

    assert client.post("/v1/me/email", headers=me, json={"email": NEW_EMAIL}).status_code == 202
    confirm = _mail_to(app, NEW_EMAIL).get_content().split("\n\n")[1].strip()
    trail.secrets.add(confirm)
    assert client.post("/v1/me/email/confirm", headers=me,
                       json={"token": confirm}).status_code == 200
    me = _log_in(client, app, NEW_EMAIL, trail)
    client.post("/v1/auth/otp", json={"email": NEW_EMAIL})  # a code never used
    trail.codes.add(re.search(r"\b(\d{6})\b", _mail_to(app, NEW_EMAIL)["Subject"])[1])

    export = client.get("/v1/me/export", headers=me)
    assert export.status_code == 200
    trail.export = export.json

    from workers.dashboard import refresh_rollups

    with app.app_context():
        refresh_rollups()
        trail.erased |= {otp_address(OLD_EMAIL), otp_address(NEW_EMAIL)}
    number = re.sub(r"\W", "", CARD)
    trail.secrets |= {CARD, number, hashlib.sha256(number.encode()).hexdigest()}
    trail.erased |= {OLD_EMAIL, NEW_EMAIL, NAME, PUSH_TOKEN, TAP_STOP, REPORT_TEXT,
                     REJECTED_TEXT, ADDRESS, USER_AGENT, "53.8123", "-1.5876"}
    for email in (OLD_EMAIL, NEW_EMAIL):  # plain digests of an address are as good as it
        trail.erased |= {hashlib.sha256(email.encode()).hexdigest(),
                         hashlib.md5(email.encode()).hexdigest()}
    return trail


def _cells(value: Any) -> list[str]:
    """A stored value as the strings to search: JSON walked, bytes and UUIDs as text."""
    if value is None:
        return []
    if isinstance(value, bytes | memoryview):
        return [bytes(value).decode("latin-1")]
    if isinstance(value, str):
        try:
            loaded = json.loads(value)
        except ValueError:
            return [value]
        return [value] if not isinstance(loaded, dict | list) else [value, *_cells(loaded)]
    if isinstance(value, dict):
        return [c for key, item in value.items() for c in (str(key), *_cells(item))]
    if isinstance(value, list | tuple):
        return [c for item in value for c in _cells(item)]
    return [str(value)]


def _every_row(app: Flask) -> list[tuple[str, str, dict[str, Any]]]:
    """(table, column, row) for every column of every row of every table there is."""
    found = []
    with app.app_context():
        meta = MetaData()
        meta.reflect(bind=db.engine)
        assert {"members", "audit_log", "outbox", "login_throttles"} <= set(meta.tables)
        with db.engine.connect() as connection:
            for table in meta.sorted_tables:
                for row in connection.execute(table.select()).mappings():
                    found.extend((table.name, column, dict(row)) for column in row.keys())
    return found


def _left_over(app: Flask, trail: Trail) -> list[str]:
    """Where a value personal to the erased resident is still held."""
    needles = {value.lower() for value in trail.erased | trail.secrets}
    # A UUID column reads back with hyphens (PostgreSQL) or as 32 hex digits (SQLite).
    member_ids = {trail.member_id.lower(), uuid.UUID(trail.member_id).hex}
    photos = [photo.decode("latin-1") for photo in trail.photos]
    left = []
    for table, column, row in _every_row(app):
        for cell in _cells(row[column]):
            lowered = cell.lower()
            left += [f"{table}.{column} holds {needle!r}" for needle in needles
                     if needle in lowered]
            left += [f"{table}.{column} holds a photo" for photo in photos if photo in cell]
        if any(c.lower() in member_ids for v in row.values() for c in _cells(v)):
            for cell in _cells(row[column]):
                if cell in trail.linked and table != "wards":
                    left.append(f"{table}.{column} keeps {cell!r} beside the member's id")
    return sorted(set(left))


def _rate_limit_keys(app: Flask) -> list[str]:
    """The keys the per-client rate limits count under (this process's memory in tests;
    Redis holds the same keys when REDIS_URL is set)."""
    counts = app.extensions["rate_limits"]
    return [str(key) for key in getattr(counts, "_counts", {})]


def test_a_resident_who_used_everything_leaves_nothing_personal_after_erasure(
        client: FlaskClient, app: Flask) -> None:
    trail = _resident_everywhere(client, app)
    before = _left_over(app, trail)
    # The search finds what is there: before erasure the values are held.
    assert any("members.email" in line for line in before), before
    assert any("self_report_photos.content holds a photo" in line for line in before), before
    assert any("devices.token" in line for line in before), before
    assert any("identifiers.number_hash" in line for line in before), before

    me = _log_in(client, app, NEW_EMAIL, trail)
    assert client.delete("/v1/me", headers=me).status_code == 204
    # The dashboard's per-member rollups follow within the minute (rewards cron).
    from workers.dashboard import refresh_rollups

    with app.app_context():
        refresh_rollups()

    assert _left_over(app, trail) == []
    # Rate-limit counters name a client by its account id, a key's digest or, for calls
    # without credentials, its network address for the window (a day at most); never by
    # an address, card or token of the resident's.
    keys = _rate_limit_keys(app)
    assert any(trail.member_id in key for key in keys), keys
    assert [key for key in keys for needle in trail.secrets | {OLD_EMAIL, NEW_EMAIL}
            if needle.lower() in key.lower()] == []


def test_no_log_line_of_a_residents_flow_holds_an_address_code_token_or_card(
        client: FlaskClient, app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    trail = _resident_everywhere(client, app)
    me = _log_in(client, app, NEW_EMAIL, trail)
    assert client.delete("/v1/me", headers=me).status_code == 204
    assert caplog.records, "nothing was logged: the scan would prove nothing"
    needles = {value.lower() for value in
               trail.secrets | trail.codes | {OLD_EMAIL, NEW_EMAIL, PUSH_TOKEN}}
    leaked = []
    for record in caplog.records:
        line = logging.Formatter("%(message)s %(exc_text)s").format(record).lower()
        leaked += [f"{record.name} {record.levelname}: {needle}" for needle in needles
                   if needle in line]
    assert sorted(set(leaked)) == []


def _tables_about_a_member(meta: MetaData) -> set[str]:
    """Tables whose rows belong to one member: those naming a member (a `member_id`, a
    foreign key to members), then those referencing a row of one of them."""
    about = {table.name for table in meta.sorted_tables
             if "member_id" in table.c
             or any(key.column.table.name == "members" for key in table.foreign_keys)}
    about.add("members")
    while True:
        more = {table.name for table in meta.sorted_tables if table.name not in about
                and any(key.column.table.name in about for key in table.foreign_keys)}
        if not more:
            return about
        about |= more


def test_every_table_about_a_member_is_exported_or_left_out_for_a_stated_reason(
        client: FlaskClient, app: Flask) -> None:
    from rewards.export import EXPORTED, NOT_EXPORTED

    trail = _resident_everywhere(client, app)
    with app.app_context():
        meta = MetaData()
        meta.reflect(bind=db.engine)
    tables = set(meta.tables)
    assert not set(EXPORTED) & set(NOT_EXPORTED)
    assert set(EXPORTED) | set(NOT_EXPORTED) <= tables, "a table named there is gone"
    assert all(len(reason) > 20 for reason in NOT_EXPORTED.values())
    about = _tables_about_a_member(meta)
    assert {"members", "actions", "posting_lines", "redemptions", "event_claims"} <= about
    assert sorted(about - set(EXPORTED) - set(NOT_EXPORTED)) == []
    # Rows that name the member in any other way (a JSON field, a target id, a scope).
    member_ids = {trail.member_id.lower(), uuid.UUID(trail.member_id).hex}
    naming = {table for table, column, row in _every_row(app)
              if any(member_id in cell.lower() for cell in _cells(row[column])
                     for member_id in member_ids)}
    assert {"audit_log", "idempotency_keys", "event_claims"} <= naming
    assert sorted(naming - set(EXPORTED) - set(NOT_EXPORTED)) == []

    me = _log_in(client, app, NEW_EMAIL, trail)
    export = client.get("/v1/me/export", headers=me).json
    assert set(EXPORTED.values()) <= set(export), "a part the map names is not exported"
    member_id = uuid.UUID(trail.member_id)
    with app.app_context(), db.engine.connect() as connection:
        def mine(name: str) -> int:
            table = meta.tables[name]
            return len(connection.execute(
                select(table).where(table.c.member_id == member_id)).all())

        for table, part in (("identifiers", "cards"), ("devices", "devices"),
                            ("notification_preferences", "notification_choices"),
                            ("actions", "actions"), ("self_reports", "self_reports"),
                            ("reviews", "reviews"), ("rewards", "rewards"),
                            ("donations", "donations"), ("event_claims", "events"),
                            ("login_sessions", "logins")):
            assert mine(table) == len(export[part]) > 0, (table, part)
        assert mine("consents") == len(export["consents"]["history"]) > 0
        assert mine("awards") == sum(len(a["awards"]) for a in export["actions"]) > 0
    assert export["events"][0]["event"] == "Beach clean"
    assert len(export["logins"]) >= 3 and all(login["started_at"] for login in export["logins"])


def test_a_refused_mail_is_logged_without_the_address_the_server_names(
        app: Flask, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import smtplib

    from rewards import mail
    from rewards.mail import MailUnavailable, send_mail

    def refuse(url: str, message: Any) -> None:
        raise smtplib.SMTPRecipientsRefused(
            {NEW_EMAIL: (550, f"5.1.1 <{NEW_EMAIL}>: no such user".encode())})

    monkeypatch.setitem(app.config, "SMTP_URL", "smtp://mail.council.example:25")
    monkeypatch.setattr(mail, "deliver", refuse)
    caplog.set_level(logging.DEBUG)
    with app.app_context(), pytest.raises(MailUnavailable) as raised:
        send_mail(NEW_EMAIL, "Your code: 123456", "Your login code is 123456.")
    # A job or request that logs the failure with its traceback prints no address.
    printed = "".join(traceback.format_exception(raised.value))
    assert "SMTPRecipientsRefused" in printed and NEW_EMAIL not in printed
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "SMTPRecipientsRefused" in logged and "no such user" in logged
    assert "q***@leeds.gov.uk" in logged
    assert NEW_EMAIL not in logged and "123456" not in logged


def _redis_text(url: str) -> str:
    """Every key in the Redis database and what it holds, as one text to search."""
    from redis import Redis

    connection = Redis.from_url(url)
    parts = []
    for key in connection.scan_iter(count=1000):
        parts.append(key.decode("latin-1"))
        kind = connection.type(key).decode()
        if kind == "string":
            values = [connection.get(key)]
        elif kind == "hash":
            values = [v for pair in connection.hgetall(key).items() for v in pair]
        elif kind == "list":
            values = connection.lrange(key, 0, -1)
        elif kind in ("set", "zset"):
            values = (connection.smembers(key) if kind == "set"
                      else connection.zrange(key, 0, -1))
        else:
            values = []
        parts.extend(v.decode("latin-1") for v in values if v is not None)
    return "\n".join(parts)


def test_redis_holds_nothing_personal_of_a_resident_before_or_after_erasure(
        client: FlaskClient, app: Flask, rq_mode: str) -> None:
    """Jobs through Redis (a voucher to issue, a points notice) and their results."""
    from ..test_worker import run_rq_worker

    trail = Trail()
    scheme = build_scheme(client, app, cost_points=10)
    me = _log_in(client, app, OLD_EMAIL, trail)
    trail.member_id = client.get("/v1/me", headers=me).json["id"]
    assert client.patch("/v1/me", headers=me, json={"display_name": NAME}).status_code == 200
    assert client.post("/v1/me/devices", headers=me, json={
        "platform": "fcm", "token": PUSH_TOKEN}).status_code in (200, 201)
    linked = client.post("/v1/me/identifiers", headers=me, json={
        "kind": "travel_card", "number": CARD, "link_code": link_code_for(app, CARD)})
    assert linked.status_code == 201, linked.json
    sent = signed_post(client, scheme.source, {"items": [
        {"external_ref": f"zephyrine-r{i}", "member": {"kind": "travel_card", "number": CARD},
         "type": "bus_journey", "occurred_at": iso(_daytime(2, 10 + i)),
         "attributes": {"distance_km": 3.2, "stop": TAP_STOP}} for i in range(2)]})
    assert [r["status"] for r in sent.json["results"]] == ["accepted"] * 2, sent.json
    claimed = client.post("/v1/me/rewards", headers=me, json={"offer_id": scheme.offer["id"]})
    assert claimed.status_code == 202, claimed.json
    done = run_rq_worker(app, rq_mode)
    assert done.returncode == 0, done.stderr[-2000:]
    code = client.get(f"/v1/me/rewards/{claimed.json['id']}", headers=me).json["code"]
    assert code  # the worker issued it: jobs and their results went through Redis
    needles = {OLD_EMAIL, NAME, PUSH_TOKEN, CARD, re.sub(r"\W", "", CARD), TAP_STOP,
               *trail.secrets}
    held = _redis_text(rq_mode)
    assert trail.member_id in held or claimed.json["id"] in held  # the search sees jobs
    assert [needle for needle in needles if needle.lower() in held.lower()] == []
    assert client.delete("/v1/me", headers=me).status_code == 204
    assert run_rq_worker(app, rq_mode).returncode == 0
    held = _redis_text(rq_mode)
    assert [needle for needle in needles if needle.lower() in held.lower()] == []


def test_a_member_enrolled_at_a_desk_is_erased_by_command_to_nothing_personal(
        client: FlaskClient, app: Flask) -> None:
    """No app, no email: a card, a PIN and a postcode district, recorded by the desk in
    the audit log too; `rewards privacy erase` takes them all."""
    from click.testing import CliRunner
    from flask.cli import ScriptInfo

    from rewards.cli import main as rewards_cli

    desk = bearer(staff_token(client, app, "desk"))
    number = "6335 7733 1199 5522"
    enrolled = client.post("/v1/admin/members", headers=desk, json={
        "card": {"kind": "leisure_card", "number": number}, "pin": PIN,
        "postcode_district": "LS29"})
    assert enrolled.status_code == 201, enrolled.json
    trail = Trail(member_id=enrolled.json["id"], linked={"LS29", "5522", PIN})
    with app.app_context():
        trail.erased.add(db.session.scalars(select(Identifier.number_hash)).one())
    trail.secrets |= {number, re.sub(r"\W", "", number)}
    before = _left_over(app, trail)
    assert any("audit_log.details keeps 'LS29'" in line for line in before), before
    assert any("members.postcode_district" in line for line in before), before

    def run(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(rewards_cli, ["privacy", "erase", *args], input=input,
                                  obj=ScriptInfo(create_app=lambda: app))

    unknown = run(str(uuid.uuid4()), "--yes")
    assert unknown.exit_code != 0 and "no member" in unknown.output
    asked = run(trail.member_id, input="n\n")
    assert asked.exit_code != 0 and _left_over(app, trail) == before
    done = run(trail.member_id, "--yes")
    assert done.exit_code == 0 and "erased" in done.output, done.output
    assert _left_over(app, trail) == []
    assert run(trail.member_id, "--yes").exit_code != 0  # once only
    with app.app_context():
        from rewards.models import AuditEntry, Member

        assert db.session.get(Member, uuid.UUID(trail.member_id)).erased_at is not None
        actions = {(e.action, e.actor_role) for e in db.session.scalars(
            select(AuditEntry).where(AuditEntry.target_id == trail.member_id))}
        assert actions == {("enrol", "desk"), ("erase", "system")}

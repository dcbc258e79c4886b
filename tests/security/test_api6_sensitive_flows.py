"""API6:2023 Unrestricted access to sensitive business flows: linking a card hands its
journeys and points to an account, so it needs proof of holding the card (a link code
from the card's operator), is capped per member, and never tells a stranger that a
card belongs to someone."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta

from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from sqlalchemy import func, select

from rewards.cli import main as rewards_cli
from rewards.extensions import db
from rewards.linking import WRONG_CODE, link_code
from rewards.models import AuditEntry, Identifier
from rewards.reasons_cy import WELSH

from ..helpers import at_once, bearer, link, link_code_for, member_token, staff_token
from ..ways_in import assert_error

CARD = "6335 0099 8877 6655"


def _cards(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Identifier.id))) or 0


def _post(client: FlaskClient, headers: dict[str, str], number: str, code: str | None,
          kind: str = "travel_card"):
    body = {"kind": kind, "number": number}
    if code is not None:
        body["link_code"] = code
    return client.post("/v1/me/identifiers", json=body, headers=headers)


def test_the_formula_is_the_documented_one() -> None:
    digest = hmac.new(b"s3cret", b"travel_card:633500998877665A:2026-11-30",
                      hashlib.sha256).digest()
    expected = f"{int.from_bytes(digest[:8], 'big') % 100_000_000:08d}"
    assert link_code("s3cret", "travel_card", "6335 0099-8877 665a", date(2026, 11, 30)) \
        == expected
    assert len(expected) == 8 and expected.isdigit()


def test_no_code_or_a_wrong_one_links_nothing(client: FlaskClient, app: Flask) -> None:
    me = bearer(member_token(client, app, "mallory@example.org"))
    good = link_code_for(app, CARD)
    missing = assert_error(_post(client, me, CARD, None), 422)
    assert "link_code" in missing["errors"]
    wrong = str((int(good) + 1) % 100_000_000).zfill(8)
    for code in (wrong, "", "abcdefgh", good[:7], "1" * 16,
                 link_code_for(app, "6335009988776656"),           # another card's code
                 link_code_for(app, CARD, kind="leisure_card")):   # another kind's code
        body = assert_error(_post(client, me, CARD, code), 422)
        assert body["errors"].get("link_code"), (code, body)
    assert _cards(app) == 0


def test_codes_expire_after_the_set_days(client: FlaskClient, app: Flask) -> None:
    me = bearer(member_token(client, app, "late@example.org"))
    link_code_for(app, CARD)  # the kind's secret exists
    with app.app_context():
        from rewards.linking import secret_for

        secret = secret_for(db.session, "travel_card")
    assert secret
    today = datetime.now(UTC).date()
    days = app.config["LINK_CODE_VALID_DAYS"]
    stale = link_code(secret, "travel_card", CARD, today - timedelta(days=days))
    assert_error(_post(client, me, CARD, stale), 422)
    recent = link_code(secret, "travel_card", CARD, today - timedelta(days=days - 1))
    assert _post(client, me, CARD, recent).status_code == 201


def test_someone_elses_card_is_not_revealed(client: FlaskClient, app: Flask) -> None:
    owner = bearer(member_token(client, app, "owner@example.org"))
    thief = bearer(member_token(client, app, "thief@example.org"))
    assert link(client, app, owner, CARD).status_code == 201
    free = "6335001111222233"
    link_code_for(app, free)
    # Without the code, a held card and a free card get the same answer, word for word.
    held = _post(client, thief, CARD, "00000000")
    unheld = _post(client, thief, free, "00000000")
    assert (held.status_code, held.json) == (unheld.status_code, unheld.json) == (
        422, held.json)
    assert held.json["message"] == WRONG_CODE
    # With the code (so holding the card), the answer is neutral: no "registered".
    proven = assert_error(link(client, app, thief, CARD), 409)
    for word in ("registered", "already", "another", "someone"):
        assert word not in proven["message"].lower()
    assert client.get("/v1/me/identifiers", headers=thief).json == []
    assert len(client.get("/v1/me/identifiers", headers=owner).json) == 1


def test_a_member_links_at_most_the_set_number_of_cards(client: FlaskClient,
                                                        app: Flask) -> None:
    me = bearer(member_token(client, app, "hoarder@example.org"))
    most = app.config["IDENTIFIERS_PER_MEMBER"]
    numbers = [f"633500{n:010d}" for n in range(most + 1)]
    for number in numbers[:most]:
        assert link(client, app, me, number).status_code == 201
    refused = assert_error(link(client, app, me, numbers[most]), 409)
    assert "most allowed" in refused["message"]
    # Its own reason: limit_reached speaks of claiming an offer.
    assert refused["reason"] == "too_many_cards"
    welsh = link(client, app, {**me, "Accept-Language": "cy"}, numbers[most])
    assert welsh.status_code == 409 and welsh.json["reason"] == "too_many_cards"
    assert welsh.json["message"] == WELSH["too_many_cards"]
    assert "cynnig" not in welsh.json["message"]  # not the offers' text
    assert _cards(app) == most


def test_the_cap_holds_under_concurrent_links(client: FlaskClient, app: Flask) -> None:
    me = bearer(member_token(client, app, "racer@example.org"))
    most = app.config["IDENTIFIERS_PER_MEMBER"]
    numbers = [f"633511{n:010d}" for n in range(most + 3)]
    codes = [link_code_for(app, number) for number in numbers]
    answers = at_once(app, len(numbers),
                      lambda c, i: _post(c, me, numbers[i], codes[i]).status_code)
    assert sorted(answers) == [201] * most + [409] * 3
    assert _cards(app) == most


def test_staff_rotate_a_kinds_link_secret(client: FlaskClient, app: Flask) -> None:
    manager = bearer(staff_token(client, app, "scheme_manager"))
    me = bearer(member_token(client, app, "rotor@example.org"))
    before = link_code_for(app, CARD)
    rotated = client.post("/v1/admin/card-kinds/travel_card/link-secret", headers=manager)
    assert rotated.status_code == 201, rotated.json
    secret = rotated.json["link_secret"]
    assert len(secret) >= 32 and "HMAC-SHA256" in rotated.json["formula"]
    today = datetime.now(UTC).date()
    new_code = link_code(secret, "travel_card", CARD, today)
    if new_code != before:
        assert_error(_post(client, me, CARD, before), 422)  # the old secret's code is dead
    assert _post(client, me, CARD, new_code).status_code == 201
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry)
                                   .where(AuditEntry.action == "rotate_link_secret")).one()
        assert secret not in str(entry.details)
    for role in ("analyst", "reviewer"):
        headers = bearer(staff_token(client, app, role))
        assert_error(client.post("/v1/admin/card-kinds/travel_card/link-secret",
                                 headers=headers), 403)
    assert_error(client.post("/v1/admin/card-kinds/credit_card/link-secret",
                             headers=manager), 404)
    assert_error(client.post("/v1/admin/card-kinds/travel_card/link-secret", headers=me), 403)


def test_a_staff_desk_prints_todays_code(app: Flask) -> None:
    def run(*args: str):
        return CliRunner().invoke(rewards_cli, list(args),
                                  obj=ScriptInfo(create_app=lambda: app))

    missing = run("link-code", "--kind", "library_card", "--number", "LIB123456")
    assert missing.exit_code != 0 and "link-secret" in missing.output
    made = run("link-secret", "--kind", "library_card")
    assert made.exit_code == 0, made.output
    secret = made.output.strip()
    printed = run("link-code", "--kind", "library_card", "--number", "LIB123456")
    assert printed.exit_code == 0, printed.output
    assert printed.output.strip() == link_code(secret, "library_card", "LIB123456",
                                               datetime.now(UTC).date())


def test_wrong_codes_for_one_card_lock_it_whichever_accounts_send_them(
        client: FlaskClient, app: Flask) -> None:
    # Accounts cost nothing and the per-client limit is per account: without a count per
    # card, enough accounts could try all 10^8 codes of someone else's card.
    app.config["LINK_CODE_LOCK_AFTER"], before = 3, app.config["LINK_CODE_LOCK_AFTER"]
    try:
        good = link_code_for(app, CARD)
        wrong = [str((int(good) + n) % 100_000_000).zfill(8) for n in (1, 2, 3)]
        for n, code in enumerate(wrong):
            guesser = bearer(member_token(client, app, f"guesser{n}@example.org"))
            assert_error(_post(client, guesser, CARD, code), 422)
        holder = bearer(member_token(client, app, "holder@example.org"))
        # Locked, for the right code too, and another spelling of the number is the card.
        for number in (CARD, CARD.replace(" ", "-")):
            locked = _post(client, holder, number, good)
            assert locked.status_code == 429, locked.json
            assert int(locked.headers["Retry-After"]) > 0
        assert _cards(app) == 0
        # Another card is not locked by this one's guesses.
        other = "6335001111222233"
        assert link(client, app, holder, other).status_code == 201
        with app.app_context():  # the counter names the card by its keyed hash only
            from rewards.models.login import LoginThrottle

            keys = [row.key for row in db.session.scalars(select(LoginThrottle))]
            assert keys and not any("6335" in key or "8877" in key for key in keys)
    finally:
        app.config["LINK_CODE_LOCK_AFTER"] = before

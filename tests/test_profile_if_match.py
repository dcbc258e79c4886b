"""GET /v1/me gives the profile's ETag; PATCH /v1/me with If-Match changes it only if it
is still that version (412 otherwise), so two devices editing at once cannot silently
overwrite each other. Concurrent PATCHes take turns on the member's row."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from .helpers import at_once
from .reward_support import resident


def test_patch_with_if_match_changes_only_the_version_it_names(
        client: FlaskClient, app: Flask) -> None:
    me = resident(client, app)
    read = client.get("/v1/me", headers=me.headers)
    tag = read.headers["ETag"]
    assert tag.startswith('"') and tag.endswith('"')
    # The same profile read again has the same tag.
    assert client.get("/v1/me", headers=me.headers).headers["ETag"] == tag

    changed = client.patch("/v1/me", json={"display_name": "Amira"},
                           headers={**me.headers, "If-Match": tag})
    assert changed.status_code == 200, changed.json
    new_tag = changed.headers["ETag"]
    assert new_tag != tag
    assert client.get("/v1/me", headers=me.headers).headers["ETag"] == new_tag

    # Another device still holding the first version is refused, and changes nothing.
    stale = client.patch("/v1/me", json={"display_name": "Someone else"},
                         headers={**me.headers, "If-Match": tag})
    assert stale.status_code == 412, stale.json
    assert stale.json["code"] == 412 and stale.json["reason"] == "precondition_failed"
    assert client.get("/v1/me", headers=me.headers).json["display_name"] == "Amira"

    # A list naming the current version, "*", or no If-Match at all: the change is made.
    for if_match in (f'"old", {new_tag}', "*", None):
        headers = {**me.headers, **({"If-Match": if_match} if if_match else {})}
        answer = client.patch("/v1/me", json={"locale": "cy"}, headers=headers)
        assert answer.status_code == 200, (if_match, answer.json)
        new_tag = answer.headers["ETag"]
    # A weak tag never matches If-Match (strong comparison).
    weak = client.patch("/v1/me", json={"locale": "en"},
                        headers={**me.headers, "If-Match": f"W/{new_tag}"})
    assert weak.status_code == 412


def test_concurrent_patches_with_the_same_if_match_one_wins(
        client: FlaskClient, app: Flask) -> None:
    """Every device read the same version and sends its change at once: exactly one is
    made, the others are told the profile changed."""
    me = resident(client, app)
    tag = client.get("/v1/me", headers=me.headers).headers["ETag"]

    def send(own: FlaskClient, index: int) -> int:
        return own.patch("/v1/me", json={"display_name": f"Device {index}"},
                         headers={**me.headers, "If-Match": tag}).status_code

    statuses = at_once(app, 6, send)
    assert sorted(statuses) == [200] + [412] * 5, statuses
    winner = statuses.index(200)
    assert client.get("/v1/me", headers=me.headers).json["display_name"] == f"Device {winner}"


def test_a_patch_that_waited_for_the_erasure_writes_nothing(
        client: FlaskClient, app: Flask) -> None:
    """The PATCH's token was checked before the erasure committed; it used to write its
    name onto the erased account once the erasure's lock was released."""
    import uuid

    from rewards.erasure import erase_member
    from rewards.extensions import db
    from rewards.models import Member, utcnow

    from .helpers import postgres_only
    from .test_erasure_races import WAIT, _in_thread, _lock_watch

    postgres_only(app, "row locks; SQLite serialises writers")
    me = resident(client, app)
    waiting = _lock_watch(app)
    with app.app_context():
        session = db.session
        erase_member(session, session.get(Member, uuid.UUID(me.id)), utcnow())
        patching, patched = _in_thread(lambda: app.test_client().patch(
            "/v1/me", json={"display_name": "Amira Khan"}, headers=me.headers))
        waiting()
        session.commit()
    patching.join(WAIT)
    assert "error" not in patched, patched
    assert patched["value"].status_code == 401, patched["value"].json
    with app.app_context():
        member = db.session.get(Member, uuid.UUID(me.id))
        assert member is not None and member.display_name is None


def test_a_patch_does_not_wait_for_rows_written_that_reference_the_member(
        client: FlaskClient, app: Flask) -> None:
    """A claim or donation in flight holds a share of the member's row (its reward or
    donation row references it). The PATCH locked the row FOR UPDATE and so waited for
    each of them, and they for it; a profile edit changes no key, so it now takes the
    row FOR NO KEY UPDATE and goes on."""
    import time

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from rewards.extensions import db

    from .helpers import postgres_only
    from .test_erasure_races import WAIT, _in_thread

    postgres_only(app, "row locks; SQLite serialises writers")
    me = resident(client, app)
    with app.app_context():
        url = db.engine.url
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as holder, engine.connect() as watcher:
            holder.execute(text("SELECT 1 FROM members WHERE id = :id FOR KEY SHARE"),
                           {"id": me.id})
            patching, patched = _in_thread(lambda: app.test_client().patch(
                "/v1/me", json={"display_name": "Amira"}, headers=me.headers))
            # Either the PATCH answers, or it is seen waiting for the held share.
            waited = False
            deadline = time.monotonic() + WAIT
            while patching.is_alive() and time.monotonic() < deadline:
                waited = bool(watcher.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")))
                if waited:
                    break
                time.sleep(0.02)
            holder.rollback()
            patching.join(WAIT)
    finally:
        engine.dispose()
    assert not waited, "the PATCH waited for a share of the member's row"
    assert "error" not in patched, patched
    assert patched["value"].status_code == 200, patched["value"].json

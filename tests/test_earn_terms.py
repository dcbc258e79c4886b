"""Points earned through a source batch carry the scheme's expiry and the rule's hold."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.extensions import db
from rewards.models import Posting, utcnow

from .helpers import bearer, build_scheme, link, member_token, signed_post, tap
from .test_flow import _daytime


def test_earned_points_expire_after_the_scheme_period(client: FlaskClient, app: Flask) -> None:
    scheme = build_scheme(client, app)
    me = bearer(member_token(client, app, "eve@example.org"))
    link(client, app, me, "4444333322221111")
    before = utcnow()
    result = signed_post(client, scheme.source,
                         {"items": [tap("e1", "4444333322221111", _daytime(1))]})
    assert result.json["results"][0]["status"] == "accepted"
    with app.app_context():
        posting = db.session.scalars(select(Posting).where(Posting.kind == "earn")).one()
        months = app.config.get("POINTS_EXPIRY_MONTHS", 24)
        assert posting.expires_at is not None
        assert before + timedelta(days=30 * months - 5) < posting.expires_at
        assert posting.expires_at < utcnow() + timedelta(days=31 * months + 1)
        assert posting.available_at is not None and posting.available_at <= utcnow()

"""A claim's answer is built from what the claim read and wrote, not dumped from the
reward's entity: it must say exactly what RewardSchema says of the same reward."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards import jobs
from rewards.extensions import db
from rewards.models import Offer, Posting, PostingLine, Reward

from .helpers import build_scheme
from .test_resident_reads import _resident


@pytest.mark.parametrize("language", ["en", "cy"])
def test_a_claims_answer_is_what_the_schema_says_of_the_reward(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch, language: str) -> None:
    scheme = build_scheme(client, app, cost_points=10)
    card = "6335000000" + ("21" if language == "en" else "22")
    me = _resident(client, app, scheme, f"answer-{language}@example.org", card, 3)
    with app.app_context():
        offer = db.session.get(Offer, uuid.UUID(scheme.offer["id"]))
        assert offer is not None
        offer.translations = {"cy": {"title": "Coffi am ddim", "description": None}}
        db.session.commit()
    # The voucher's job would issue it at once here (no Redis): keep it pending, as
    # the answer describes it.
    monkeypatch.setattr(jobs, "dispatch_pending", lambda *args, **kwargs: None)
    headers = {**me, "Accept-Language": language}
    claimed = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]},
                          headers=headers)
    assert claimed.status_code == 202, claimed.json
    shown = client.get(f"/v1/me/rewards/{claimed.json['id']}", headers=headers)
    assert shown.status_code == 200, shown.json
    assert claimed.json == shown.json
    assert claimed.json["status"] == "pending" and claimed.json["code"] is None
    assert claimed.json["title"] == ("Coffi am ddim" if language == "cy" else offer.title)
    assert claimed.json["partner"]["id"] == str(offer.partner_id)
    with app.app_context():
        reward = db.session.get(Reward, uuid.UUID(claimed.json["id"]))
        assert reward is not None
        assert (reward.status, reward.cost_points, reward.code) == ("pending", 10, None)
        [hold] = db.session.query(Posting).filter_by(reward_id=reward.id).all()
        assert (hold.kind, hold.key) == ("hold", f"reward:{reward.id}:hold")
        lines = db.session.query(PostingLine).filter_by(posting_id=hold.id).all()
        assert sorted(line.points for line in lines) == [-10, 10]


"""Issuing vouchers for claimed rewards."""

from __future__ import annotations

import logging
import uuid

from flask import current_app
from sqlalchemy import inspect

from rewards import vouchers
from rewards.extensions import db
from rewards.mail import send_mail
from rewards.models import Member, Reward

from . import job

log = logging.getLogger("workers.rewards")


def _last_attempt() -> bool:
    from rq import get_current_job

    current = get_current_job()
    # In-process (no RQ job) there is no retry to wait for.
    return current is None or not current.retries_left


@job
def issue_reward(reward_id: str) -> str:
    """Issue the voucher for a pending reward. Running it twice issues one voucher;
    after the last retry fails the reward is `failed` and the points go back."""
    session = db.session
    rid = uuid.UUID(reward_id)
    try:
        reward = vouchers.issue(session, rid)
        # Only the run that moved the reward from pending tells the member; a rerun
        # finds it issued already and must not mail the code again.
        issued_now = reward is not None and inspect(reward).attrs.status.history.has_changes()
        session.commit()
    except Exception as error:
        session.rollback()
        if _last_attempt():
            vouchers.fail(session, rid, f"could not issue the voucher: {error}")
            session.commit()
        raise
    if reward is None:
        return "missing"
    if issued_now and reward.status == "issued":
        _tell_member(reward)
    return reward.status


def _tell_member(reward: Reward) -> None:
    member = db.session.get(Member, reward.member_id)
    if member is None or not member.email:
        return
    try:
        send_mail(
            member.email,
            f"Your voucher is ready: {reward.offer.title}",
            f"Your voucher for {reward.offer.title} at {reward.offer.partner.name} is ready.\n"
            f"Code: {reward.code}\nShow it at the till before "
            f"{reward.expires_at:%d %B %Y}.\n\n{current_app.config['SCHEME_NAME']}",
        )
    except Exception:  # the voucher stands; a lost notice must not re-run the job
        log.exception("could not mail voucher notice for reward %s", reward.id)

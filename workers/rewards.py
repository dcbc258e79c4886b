"""Reward jobs: issuing vouchers (ours, or a partner's pass through its webhook),
expiring unredeemed vouchers, reminding members before a voucher expires, and giving
up on rewards whose issuing never finished."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from rewards import jobs, vouchers
from rewards.extensions import db
from rewards.i18n import localise, preferences
from rewards.models import Member, Offer, OutboxMessage, Reward, utcnow
from rewards.notice_text import long_date, mail_language, text
from rewards.notify import Notice, deliver, notify, plan

from . import job
from .fulfilment import PermanentFulfilmentError, call_partner, request_body

log = logging.getLogger("workers.rewards")

ISSUE_JOB = "workers.rewards.issue_reward"


def _moment(now: str | None) -> datetime:
    # RQ passes arguments as JSON-friendly values: an RFC 3339 string, or nothing.
    if now is None:
        return utcnow()
    return datetime.fromisoformat(now.replace("Z", "+00:00"))


@job
def issue_reward(reward_id: str) -> str:
    """Issue the voucher for a pending reward. Running it twice issues one voucher;
    after the last retry fails (or at once, if the partner's system refuses the
    request outright) the reward is `failed` and the points and stock go back."""
    session = db.session
    rid = uuid.UUID(reward_id)
    try:
        reward = session.get(Reward, rid)
        if reward is None or reward.status != "pending":
            status = "missing" if reward is None else reward.status
            session.rollback()
            return status
        offer = session.get(Offer, reward.offer_id)
        assert offer is not None
        if offer.fulfilment == "webhook":
            reward = _issue_by_partner(session, reward, offer)
        else:
            reward = vouchers.issue(session, rid)
        # Only the run that moved the reward from pending tells the member; a rerun
        # finds it issued already and must not mail the code again. The notice is read
        # before the commit, so nothing reads the database after it.
        issued_now = reward is not None and inspect(reward).attrs.status.history.has_changes()
        notice = _voucher_notice(reward) if issued_now and reward is not None else None
        session.commit()
    except PermanentFulfilmentError as error:
        session.rollback()
        vouchers.fail(session, rid, f"the partner's system refused the request: {error}")
        session.commit()
        return "failed"
    except Exception as error:
        session.rollback()
        if jobs.last_attempt():
            vouchers.fail(session, rid, f"could not issue the voucher: {error}")
            session.commit()
        raise
    if reward is None:
        return "missing"
    if notice is not None:
        _send_notice(reward.id, notice)
    return reward.status


def give_up_issuing(reward_id: str) -> str:
    """Fail a reward whose issuing job the relay gave up on: every attempt died with its
    worker (rewards.relay.GIVE_UP), so none got to fail it. Points and stock go back."""
    reward = vouchers.fail(db.session, uuid.UUID(reward_id),
                           "the voucher could not be issued: every attempt was cut short")
    db.session.commit()
    return reward.status if reward is not None else "missing"


def _issue_by_partner(session: Session, reward: Reward, offer: Offer) -> Reward | None:
    """Ask the partner's system for the pass, then issue the reward with it. No
    transaction (so no lock) is held during the call; the partner sees the reward id
    as the Idempotency-Key, so a rerun after a crash gets the same pass back."""
    partner = offer.partner
    if not partner.fulfilment_url or not partner.webhook_secret:
        raise PermanentFulfilmentError("the partner has no fulfilment endpoint set up")
    expires_at = utcnow() + timedelta(days=offer.voucher_valid_days)
    body = request_body(str(reward.id), str(partner.id), str(reward.member_id), str(offer.id),
                        offer.title, expires_at)
    url, rid = partner.fulfilment_url, reward.id
    signing_secrets = partner.webhook_secrets(utcnow())
    session.commit()
    config = current_app.config
    allow_private = bool(config.get("WEBHOOK_ALLOW_PRIVATE_NETWORKS"))
    answer = call_partner(url, signing_secrets, str(rid), body,
                          float(config.get("PARTNER_TIMEOUT_SECONDS", 10)),
                          allow_private=allow_private,
                          allow_http=allow_private or bool(config.get("DEVELOPMENT")))
    return vouchers.issue(session, rid, expires_at=expires_at, partner_code=answer.code,
                          partner_reference=answer.reference)


def _title(reward: Reward, member: Member) -> str:
    offer = reward.offer
    return localise(offer.title, offer.description, offer.translations,
                    preferences(None, member.locale))[0]


def _local(moment: datetime) -> datetime:
    """A stored time as the scheme's residents read it (SCHEME_TIMEZONE)."""
    if moment.tzinfo is None:  # SQLite gives back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(current_app.config["SCHEME_TIMEZONE"]))


def _voucher_notice(reward: Reward) -> Notice | None:
    """The "your voucher is ready" notice, on the channels the member chose and in their
    language (read now, before the commit); None for an erased member."""
    member = db.session.get(Member, reward.member_id)
    if member is None or member.erased_at is not None:
        return None
    language = mail_language(member.locale)
    reference = text("booking_reference", language, reference=reward.partner_reference)[1] \
        if reward.partner_reference else ""
    subject, body = text(
        "voucher_ready", language, title=_title(reward, member),
        partner=reward.offer.partner.name, code=reward.code or reward.partner_code,
        reference=reference, expires=long_date(_local(reward.expires_at), language),
        scheme=current_app.config["SCHEME_NAME"])
    return plan(db.session, member, "voucher_ready", subject, body,
                {"reward_id": str(reward.id)})


def _send_notice(reward_id: uuid.UUID, notice: Notice) -> None:
    try:
        deliver(db.session, notice)
    except Exception:  # the voucher stands; a lost notice must not re-run the job
        log.exception("could not mail voucher notice for reward %s", reward_id)


# -- scheduled (workers/cron.py) -----------------------------------------------------------

@job
def expire_vouchers(now: str | None = None) -> dict[str, Any]:
    """Expire issued vouchers past their expiry (as of `now`, default the present), each
    in its own transaction; points go back where the offer says so. Safe to run twice."""
    session = db.session
    moment = _moment(now)
    summary: dict[str, Any] = {"expired": 0, "points_returned": 0, "failed": 0}
    seen: set[uuid.UUID] = set()
    while True:
        batch = [rid for rid in vouchers.vouchers_past_expiry(session, moment) if rid not in seen]
        session.commit()
        if not batch:
            break
        for rid in batch:
            seen.add(rid)
            try:
                points = vouchers.expire_voucher(session, rid, moment)
                session.commit()
            except Exception:  # one voucher's trouble must not hold up the rest
                session.rollback()
                log.exception("could not expire voucher %s", rid)
                summary["failed"] += 1
                continue
            if points is not None:
                summary["expired"] += 1
                summary["points_returned"] += points
    if summary["failed"]:
        raise RuntimeError(f"{summary['failed']} voucher(s) could not be expired; see the log")
    return summary


@job
def remind_expiring_vouchers(now: str | None = None) -> dict[str, int]:
    """Mail each member whose voucher expires within three days, once per voucher: the
    reminder is recorded before the mail goes and forgotten again if it fails, so a
    rerun neither repeats a sent reminder nor loses a failed one."""
    session = db.session
    moment = _moment(now)
    sent = failed = 0
    ids = vouchers.vouchers_to_remind(session, moment)
    session.commit()
    for rid in ids:
        reward = session.get(Reward, rid)
        if reward is None or not vouchers.mark_reminded(session, rid, moment):
            session.rollback()  # another run took it
            continue
        member = session.get(Member, reward.member_id)
        session.commit()
        if member is None:
            continue
        language = mail_language(member.locale)
        subject, body = text(
            "voucher_expiring", language, title=_title(reward, member),
            partner=reward.offer.partner.name, code=reward.code or reward.partner_code,
            expires=long_date(_local(reward.expires_at), language),
            time=f"{_local(reward.expires_at):%H:%M %Z}",
            scheme=current_app.config["SCHEME_NAME"])
        try:
            delivered = notify(session, member, "voucher_expiring", subject, body,
                               {"reward_id": str(rid)})
        except Exception:
            log.exception("could not mail the expiry reminder for reward %s", rid)
            vouchers.mark_reminded(session, rid, None)
            session.commit()
            failed += 1
            continue
        if any(delivered.values()):  # nobody to tell (a card-only member): recorded anyway
            sent += 1
    return {"sent": sent, "failed": failed}


@job
def fail_stuck_rewards(now: str | None = None) -> dict[str, int]:
    """Give up on rewards still pending long after every retry of their job is over
    (a worker killed on the last attempt never gets to fail it): the points and stock
    go back. Rewards whose job the outbox still holds (waiting for Redis, queued,
    running or due for a retry) are left alone: they are issued or failed by it."""
    session = db.session
    moment = _moment(now)
    after = int(current_app.config.get("REWARD_STUCK_AFTER_SECONDS", 6 * 3600))
    stuck = vouchers.stuck_rewards(session, moment - timedelta(seconds=after))
    waiting = {
        str((kwargs or {}).get("reward_id"))
        for kwargs in session.scalars(select(OutboxMessage.kwargs).where(
            OutboxMessage.job == ISSUE_JOB, OutboxMessage.due_at.is_not(None)))
    }
    session.commit()
    failed = 0
    for rid in stuck:
        if str(rid) in waiting:
            continue
        reward = vouchers.fail(session, rid, "the voucher was not issued in time; "
                                             "points returned")
        changed = reward is not None and inspect(reward).attrs.status.history.has_changes()
        session.commit()
        failed += changed
    return {"failed": failed}

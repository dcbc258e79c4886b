"""Telling a member something, the way they chose: each kind of notification
(voucher_ready, voucher_expiring, points_earned, scheme_news) on each channel (push to
their devices, email) is on or off per member; without a choice, all are on but
scheme_news and points_earned by email. Pushes go to every device, push by push (a
device that fails does not stop the others); push is sent before mail, and a mail
that fails raises, as send_mail does, so the caller can try again another time."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .awarding import on_batch_awarded
from .jobs import enqueue
from .mail import send_mail
from .models import Action, Device, Member, NotificationPreference
from .models.device import CHANNELS, NOTIFICATION_KINDS, OFF_UNLESS_CHOSEN
from .push import INVALID_TOKEN, SENT, PushMessage, sender

log = logging.getLogger(__name__)


def preferences_of(session: Session, member_id: uuid.UUID) -> dict[str, dict[str, bool]]:
    chosen = {(row.kind, row.channel): row.enabled for row in session.scalars(
        select(NotificationPreference).where(NotificationPreference.member_id == member_id))}
    return {kind: {channel: chosen.get((kind, channel), (kind, channel) not in OFF_UNLESS_CHOSEN)
                   for channel in CHANNELS} for kind in NOTIFICATION_KINDS}


def set_preferences(session: Session, member_id: uuid.UUID,
                    choices: dict[str, dict[str, bool]]) -> None:
    for kind, channels in choices.items():
        for channel, enabled in channels.items():
            row = session.get(NotificationPreference, (member_id, kind, channel))
            if row is None:
                session.add(NotificationPreference(member_id=member_id, kind=kind,
                                                   channel=channel, enabled=enabled))
            else:
                row.enabled = enabled
    session.flush()


def wanted_by(session: Session, member_ids: list[uuid.UUID], kind: str
              ) -> dict[uuid.UUID, dict[str, bool]]:
    """preferences_of(...)[kind] for many members, in one query."""
    chosen: dict[uuid.UUID, dict[str, bool]] = {}
    for start in range(0, len(member_ids), 500):
        for row in session.scalars(select(NotificationPreference).where(
                NotificationPreference.member_id.in_(member_ids[start:start + 500]),
                NotificationPreference.kind == kind)):
            chosen.setdefault(row.member_id, {})[row.channel] = row.enabled
    return {member_id: {channel: chosen.get(member_id, {}).get(
        channel, (kind, channel) not in OFF_UNLESS_CHOSEN) for channel in CHANNELS}
        for member_id in member_ids}


def devices_of(session: Session, member_ids: list[uuid.UUID]
               ) -> dict[uuid.UUID, tuple[tuple[uuid.UUID, str, str], ...]]:
    """Each member's devices as Notice.devices, in one query."""
    found: dict[uuid.UUID, list[tuple[uuid.UUID, str, str]]] = {}
    for start in range(0, len(member_ids), 500):
        for device in session.scalars(select(Device).where(
                Device.member_id.in_(member_ids[start:start + 500]))):
            found.setdefault(device.member_id, []).append(
                (device.id, device.platform, device.token))
    return {member_id: tuple(devices) for member_id, devices in found.items()}


@dataclass(frozen=True)
class Notice:
    """Everything needed to send one notification, read while the caller's transaction
    is open; sending it (`deliver`) reads nothing more."""

    kind: str
    subject: str
    body: str
    data: dict[str, str]
    email: str | None  # None: the member does not want this by email, or has no address
    devices: tuple[tuple[uuid.UUID, str, str], ...]  # (id, platform, token) to push to


def plan(session: Session, member: Member, kind: str, subject: str, body: str,
         data: dict[str, str] | None = None) -> Notice:
    assert kind in NOTIFICATION_KINDS, kind
    wanted = preferences_of(session, member.id)[kind]
    devices: tuple[tuple[uuid.UUID, str, str], ...] = ()
    if wanted["push"]:
        devices = tuple((device.id, device.platform, device.token) for device in session.scalars(
            select(Device).where(Device.member_id == member.id)))
    return Notice(kind, subject, body, dict(data or {}),
                  member.email if wanted["email"] else None, devices)


def deliver(session: Session, notice: Notice) -> dict[str, int]:
    """Send a planned notice; how many went each way. Devices the push service says are
    gone are removed (in a transaction of their own)."""
    sent = {"email": 0, "push": 0}
    message = PushMessage(notice.subject, notice.body.split("\n\n")[0],
                          {"kind": notice.kind, **notice.data})
    gone = []
    for device_id, platform, token in notice.devices:
        try:
            result = sender().send(platform, token, message)
        except Exception:
            log.exception("could not push %s to device %s", notice.kind, device_id)
            continue
        if result == SENT:
            sent["push"] += 1
        elif result == INVALID_TOKEN:
            gone.append(device_id)
    if gone:
        session.execute(delete(Device).where(Device.id.in_(gone)))
        session.commit()
    if notice.email:
        send_mail(notice.email, notice.subject, notice.body)
        sent["email"] = 1
    return sent


def notify(session: Session, member: Member, kind: str, subject: str, body: str,
           data: dict[str, str] | None = None) -> dict[str, int]:
    """Send `kind` to the member on the channels they want; how many went each way."""
    return deliver(session, plan(session, member, kind, subject, body, data))


POINTS_EARNED_JOB = "workers.notices.points_earned"


def earned_by_member(session: Session, results: Iterable[Mapping[str, Any]]
                     ) -> dict[str, list[int]]:
    """From a batch's item results: {member id: [points, actions]} for every member whose
    accepted actions earned points."""
    points = {uuid.UUID(str(result["action_id"])): int(result["points"]) for result in results
              if result.get("status") == "accepted" and result.get("points")}
    earned: dict[str, list[int]] = {}
    ids = list(points)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for action_id, member_id in session.execute(
                select(Action.id, Action.member_id).where(Action.id.in_(chunk))):
            total = earned.setdefault(str(member_id), [0, 0])
            total[0] += points[action_id]
            total[1] += 1
    return earned


def enqueue_points_earned(session: Session, earned: Mapping[str, list[int]]) -> None:
    """One `points_earned` notice per member for an awarded batch (not one per action),
    sent by a job through the outbox in the caller's transaction; the job honours each
    member's choices."""
    if earned:
        enqueue(POINTS_EARNED_JOB, earned={key: list(value) for key, value in earned.items()})


@on_batch_awarded
def _tell_members_of_deferred_awards(session: Session,
                                     awarded: Mapping[uuid.UUID, list[int]]) -> None:
    """Deferred awarding (AWARDING=deferred) tells members of their points when a worker
    has awarded them, in the same transaction; inline batches are told by the route."""
    enqueue_points_earned(session, {str(member_id): list(total)
                                    for member_id, total in awarded.items()})

"""Telling a member something, the way they chose: each kind of notification
(voucher_ready, voucher_expiring, points_earned, scheme_news) on each channel (push to
their devices, email) is on or off per member; without a choice, all are on but
scheme_news. Pushes go to every device, push by push (a device that fails does not stop
the others); push is sent before mail, and a mail that fails raises, as send_mail
does, so the caller can try again another time."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .mail import send_mail
from .models import Device, Member, NotificationPreference
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


def notify(session: Session, member: Member, kind: str, subject: str, body: str,
           data: dict[str, str] | None = None) -> dict[str, int]:
    """Send `kind` to the member on the channels they want; how many went each way."""
    assert kind in NOTIFICATION_KINDS, kind
    wanted = preferences_of(session, member.id)[kind]
    sent = {"email": 0, "push": 0}
    if wanted["push"]:
        devices = list(session.scalars(select(Device).where(Device.member_id == member.id)))
        message = PushMessage(subject, body.split("\n\n")[0], {"kind": kind, **(data or {})})
        gone = []
        for device in devices:
            try:
                result = sender().send(device.platform, device.token, message)
            except Exception:
                log.exception("could not push %s to device %s", kind, device.id)
                continue
            if result == SENT:
                sent["push"] += 1
            elif result == INVALID_TOKEN:
                gone.append(device.id)
        if gone:
            session.execute(delete(Device).where(Device.id.in_(gone)))
            session.commit()
    if wanted["email"] and member.email:
        send_mail(member.email, subject, body)
        sent["email"] = 1
    return sent

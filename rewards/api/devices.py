"""A resident's phones for push notifications, and which notifications they want on
which channel."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import delete, func, select

from ..extensions import Blueprint, db
from ..members import lock_member
from ..models import Device, utcnow
from ..models.device import NOTIFICATION_KINDS, PLATFORMS
from ..notify import preferences_of, set_preferences
from ..reasons import Reason
from .auth import BEARER, current_member, member_required
from .common import paginate

blp = Blueprint("devices", __name__, url_prefix="/v1/me",
                description="A resident's devices and notification choices")


class DeviceIn(Schema):
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS), metadata={
        "description": "fcm: a Firebase Cloud Messaging registration token; apns: an APNs "
                       "device token."})
    token = fields.String(required=True, load_only=True, validate=[
        validate.Length(min=8, max=400), validate.Regexp(r"^[A-Za-z0-9:_\-.]+$")])


class DeviceOut(Schema):
    id = fields.UUID()
    platform = fields.String(metadata={"enum": list(PLATFORMS)})
    created_at = fields.DateTime()
    last_seen_at = fields.DateTime(allow_none=True)


class ChannelChoice(Schema):
    push = fields.Boolean()
    email = fields.Boolean()


NotificationPreferences = Schema.from_dict(
    {kind: fields.Nested(ChannelChoice) for kind in NOTIFICATION_KINDS},
    name="NotificationPreferences")


@blp.route("/devices")
class Devices(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, DeviceOut(many=True))
    @blp.paginate()
    @member_required
    def get(self, pagination_parameters):
        """This account's devices (never their tokens)."""
        return paginate(select(Device).where(Device.member_id == current_member().id)
                        .order_by(Device.created_at, Device.id), pagination_parameters)

    @blp.doc(security=BEARER)
    @member_required
    @blp.arguments(DeviceIn)
    @blp.response(201, DeviceOut)
    @blp.alt_response(409, description="The account has DEVICES_PER_MEMBER devices already "
                                       "(too_many_devices)")
    def post(self, args: dict[str, Any]):
        """Register this phone's push token (again after the app gets a new one). A token
        registered to another account moves here: the phone is signed in here now. An
        account has at most DEVICES_PER_MEMBER (10) devices."""
        member = current_member()
        lock_member(db.session, member.id)  # registrations take turns: the count is exact
        device = db.session.scalar(select(Device).where(Device.token == args["token"]))
        if device is None or device.member_id != member.id:
            # A token moving here from another account counts as a new device: else an
            # account could gather any number from accounts of its own.
            most = current_app.config["DEVICES_PER_MEMBER"]
            owned = db.session.scalar(select(func.count(Device.id))
                                      .where(Device.member_id == member.id))
            if owned >= most:
                db.session.rollback()
                abort(409, reason=Reason.TOO_MANY_DEVICES,
                      message=f"At most {most} devices; remove one first.")
        if device is None:
            device = Device(id=uuid.uuid4(), member_id=member.id, **args)
            db.session.add(device)
        device.member_id, device.platform, device.last_seen_at = (
            member.id, args["platform"], utcnow())
        db.session.commit()
        return device


@blp.route("/devices/<uuid:device_id>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@member_required
def forget_device(device_id: uuid.UUID):
    """Stop pushing to a device (signing out of the app, say)."""
    removed = db.session.execute(delete(Device).where(
        Device.id == device_id, Device.member_id == current_member().id))
    if removed.rowcount != 1:
        abort(404, message="No such device on this account.")
    db.session.commit()


@blp.route("/notification-preferences")
class Preferences(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, NotificationPreferences)
    @member_required
    def get(self):
        """What this account is told about, on which channel (push, email). Until
        chosen, everything is on but scheme_news."""
        return preferences_of(db.session, current_member().id)

    @blp.doc(security=BEARER)
    @member_required
    @blp.arguments(NotificationPreferences)
    @blp.response(200, NotificationPreferences)
    def patch(self, args: dict[str, Any]):
        """Turn kinds of notification on or off per channel; what is not sent stays."""
        member = current_member()
        set_preferences(db.session, member.id, args)
        db.session.commit()
        return preferences_of(db.session, member.id)


__all__ = ["blp"]

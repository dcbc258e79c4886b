"""A resident's phones for push notifications, and which notifications they want on
which channel."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import delete, select

from ..extensions import Blueprint, db
from ..models import Device, utcnow
from ..models.device import NOTIFICATION_KINDS, PLATFORMS
from ..notify import preferences_of, set_preferences
from .auth import BEARER, current_member, member_required
from .common import paginate

blp = Blueprint("devices", __name__, url_prefix="/v1/me",
                description="A resident's devices and notification choices")

MAX_DEVICES = 10


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
    def post(self, args: dict[str, Any]):
        """Register this phone's push token (again after the app gets a new one). A token
        registered to another account moves here: the phone is signed in here now."""
        member = current_member()
        device = db.session.scalar(select(Device).where(Device.token == args["token"]))
        if device is None:
            owned = select(Device.id).where(Device.member_id == member.id)
            if len(db.session.scalars(owned).all()) >= MAX_DEVICES:
                abort(409, message=f"At most {MAX_DEVICES} devices; remove one first.")
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

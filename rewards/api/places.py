"""Partners as places, for an app's map: address, location, opening hours and logo, set
by scheme staff; `GET /v1/partners?near=lat,lon` lists the nearest first."""

from __future__ import annotations

import math
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from ..extensions import Blueprint, db
from ..models import Partner
from .caching import cached
from .checks import storable_text

blp = Blueprint("places", __name__, url_prefix="/v1/partners",
                description="Partners as places, for maps")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="A time as HH:MM (24-hour).")
EARTH_RADIUS_M = 6_371_000


class OpeningPeriod(Schema):
    opens = fields.String(required=True, validate=_TIME)
    closes = fields.String(required=True, validate=_TIME, metadata={
        "description": "Before `opens` for a period past midnight."})


class OpeningHours(Schema):
    """Per day of the week, the periods the place is open (none: closed that day)."""

    mon = fields.List(fields.Nested(OpeningPeriod), load_default=list)
    tue = fields.List(fields.Nested(OpeningPeriod), load_default=list)
    wed = fields.List(fields.Nested(OpeningPeriod), load_default=list)
    thu = fields.List(fields.Nested(OpeningPeriod), load_default=list)
    fri = fields.List(fields.Nested(OpeningPeriod), load_default=list)
    sat = fields.List(fields.Nested(OpeningPeriod), load_default=list)
    sun = fields.List(fields.Nested(OpeningPeriod), load_default=list)


def image_url_field(what: str) -> fields.Url:
    return fields.Url(schemes={"https"}, allow_none=True,
                      validate=validate.Length(max=500),
                      metadata={"description": f"{what} (https)."})


class PlaceIn(Schema):
    """What staff set about a partner's place (every field optional, null clears it)."""

    address = fields.String(allow_none=True, validate=[validate.Length(max=300), storable_text])
    latitude = fields.Float(allow_none=True, validate=validate.Range(min=-90, max=90))
    longitude = fields.Float(allow_none=True, validate=validate.Range(min=-180, max=180))
    opening_hours = fields.Nested(OpeningHours, allow_none=True)
    logo_url = image_url_field("The partner's logo")

    @validates_schema
    def _both_or_neither(self, data: dict[str, Any], **_: Any) -> None:
        if ("latitude" in data) != ("longitude" in data) or (
                (data.get("latitude") is None) != (data.get("longitude") is None)):
            raise ValidationError("Give latitude and longitude together.", "latitude")


class PlaceOut(Schema):
    address = fields.String(allow_none=True)
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    opening_hours = fields.Nested(OpeningHours, allow_none=True)
    logo_url = fields.String(allow_none=True)


class PartnerPlace(PlaceOut):
    id = fields.UUID()
    name = fields.String()
    description = fields.String(allow_none=True)
    distance_m = fields.Integer(allow_none=True, metadata={
        "description": "From `near`, in metres (null without `near`)."})


class PlacesQuery(Schema):
    near = fields.String(validate=validate.Regexp(
        r"^-?\d{1,2}(\.\d+)?,-?\d{1,3}(\.\d+)?$", error="near=lat,lon in degrees."),
        metadata={"description": "lat,lon: nearest first, within radius_km."})
    radius_km = fields.Float(load_default=10, validate=validate.Range(min=0.1, max=100))

    @validates_schema
    def _on_earth(self, data: dict[str, Any], **_: Any) -> None:
        if "near" in data:
            lat, lon = (float(part) for part in data["near"].split(","))
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValidationError("Latitude -90 to 90, longitude -180 to 180.", "near")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


@blp.route("")
@cached(300, private=False)
@blp.arguments(PlacesQuery, location="query")
@blp.response(200, PartnerPlace(many=True))
@blp.paginate()
def places(args: dict[str, Any], pagination_parameters: Any):
    """The scheme's active business partners with their places, by name; with
    `near=lat,lon` only those within `radius_km` (default 10) that have a location,
    nearest first. Open to anyone: a map needs no account. Paged like every list
    (`page`, `page_size`; X-Pagination)."""
    rows = _places(args)
    pagination_parameters.item_count = len(rows)
    page, size = pagination_parameters.page, pagination_parameters.page_size
    return rows[(page - 1) * size:page * size]


def _places(args: dict[str, Any]) -> list[dict[str, Any]]:
    partners = list(db.session.scalars(
        select(Partner).where(Partner.active.is_(True), Partner.kind == "business")
        .order_by(Partner.name, Partner.id)))
    rows = [{**_place(partner), "distance_m": None} for partner in partners]
    if "near" not in args:
        return rows
    lat, lon = (float(part) for part in args["near"].split(","))
    limit = args["radius_km"] * 1000
    near = []
    for row in rows:
        if row["latitude"] is None or row["longitude"] is None:
            continue
        metres = distance_m(lat, lon, row["latitude"], row["longitude"])
        if metres <= limit:
            near.append({**row, "distance_m": round(metres)})
    return sorted(near, key=lambda row: row["distance_m"])


def _place(partner: Partner) -> dict[str, Any]:
    return {"id": partner.id, "name": partner.name, "description": partner.description,
            "address": partner.address, "latitude": partner.latitude,
            "longitude": partner.longitude, "opening_hours": partner.opening_hours,
            "logo_url": partner.logo_url}

"""Staff settings behind the figures: what a point is worth, impact factors per action
type, each ward's adult population and deprivation decile. Stored as key -> JSON."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import utcnow
from ..models.dashboard import DashboardSetting

VALUE_PER_POINT = "value_per_point"
DEFAULT_PENCE_PER_POINT = 1.0
IMPACT_FIELDS = ("co2_kg", "co2_kg_per_km", "car_km", "car_km_per_km")
WARD_FIELDS = ("adult_population", "imd_decile", "illustrative")


@dataclass(frozen=True)
class WardFacts:
    ward: str
    adult_population: int | None
    imd_decile: int | None
    illustrative: bool = False


def _get(session: Session, key: str) -> dict[str, Any] | None:
    row = session.get(DashboardSetting, key)
    return dict(row.value) if row else None


def put(session: Session, key: str, value: dict[str, Any], actor: uuid.UUID | None) -> dict:
    """Store a setting; returns what it was before (for the audit log)."""
    row = session.get(DashboardSetting, key)
    before = dict(row.value) if row else None
    if row is None:
        row = DashboardSetting(key=key, value=value, updated_by=actor)
        session.add(row)
    else:
        row.value = value
        row.updated_by = actor
        row.updated_at = utcnow()
    return {"before": before, "after": value}


def pence_per_point(session: Session) -> float:
    value = _get(session, VALUE_PER_POINT)
    return float(value["pence"]) if value else DEFAULT_PENCE_PER_POINT


def impact_factors(session: Session) -> dict[str, dict[str, float]]:
    rows = session.scalars(select(DashboardSetting).where(DashboardSetting.key.like("impact:%")))
    return {row.key.split(":", 1)[1]: {k: float(row.value.get(k) or 0) for k in IMPACT_FIELDS}
            for row in rows}


def wards(session: Session) -> dict[str, WardFacts]:
    rows = session.scalars(select(DashboardSetting).where(DashboardSetting.key.like("ward:%")))
    result = {}
    for row in rows:
        name = row.key.split(":", 1)[1]
        result[name] = WardFacts(name, row.value.get("adult_population"),
                                 row.value.get("imd_decile"),
                                 bool(row.value.get("illustrative")))
    return result


def all_settings(session: Session) -> dict[str, Any]:
    return {
        "pence_per_point": pence_per_point(session),
        "impact": impact_factors(session),
        "wards": {name: {"adult_population": facts.adult_population,
                         "imd_decile": facts.imd_decile, "illustrative": facts.illustrative}
                  for name, facts in sorted(wards(session).items())},
    }

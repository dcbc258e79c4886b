"""Loads the live rule versions from the database and keeps them compiled.

The cache is per process and keyed by rule version id: a new version is a new
key, so every API and worker process picks up an edit on its next batch."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Rule, RuleVersion
from ..rules import CompiledRule, ExpressionError, RuleSpec, compile_rule

_compiled: dict[str, CompiledRule] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class _Unusable:
    """Stands in for an expression the engine will not compile (saved before a check
    existed, or by an engine version that took it): every use fails, so the rule is
    skipped and the action flagged, like any rule failing at run time."""

    message: str

    def evaluate(self, _context: Any) -> Any:
        raise ExpressionError(f"the rule cannot be compiled: {self.message}")


def compiled(spec: RuleSpec) -> CompiledRule:
    try:
        return compile_rule(spec)
    except Exception as error:  # noqa: BLE001 - ExpressionError, or the engine's own
        broken = _Unusable(str(error).split("\n", 1)[0][:200])
        return CompiledRule(spec=spec, condition=broken, points=broken)


def spec_of(version: RuleVersion) -> RuleSpec:
    return RuleSpec(
        rule_id=str(version.rule_id),
        version_id=str(version.id),
        version=version.version,
        name=version.name,
        action_types=frozenset(version.action_types or ()),
        condition=version.condition,
        points=version.points,
        starts_at=version.starts_at,
        ends_at=version.ends_at,
        caps={k: int(v) for k, v in (version.caps or {}).items() if v is not None},
        points_caps={k: int(v) for k, v in (version.points_caps or {}).items() if v is not None},
        budget_points=version.budget_points,
        priority=version.priority,
        stackable=version.stackable,
        hold_days=version.hold_days,
    )


def live_rules(session: Session) -> list[CompiledRule]:
    versions = session.scalars(
        select(RuleVersion)
        .join(Rule, Rule.id == RuleVersion.rule_id)
        .where(RuleVersion.version == Rule.current_version, RuleVersion.status == "active")
    ).all()
    result = []
    with _lock:
        for version in versions:
            key = str(version.id)
            rule = _compiled.get(key)
            if rule is None:
                rule = compiled(spec_of(version))
                _compiled[key] = rule
            result.append(rule)
    return result

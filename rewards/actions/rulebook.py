"""Loads the live rule versions from the database and keeps them compiled.

The cache is per process and keyed by rule version id. Versions are immutable (an
edit, an activation or a retirement makes a new one), so a cached version is never
stale: each batch asks the database which versions are live, and every API and
worker process picks up a change on its next batch. Versions no longer live are
dropped, so the cache holds at most the live rule set."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Rule, RuleVersion
from ..rules import CompiledRule, ExpressionError, RuleSet, RuleSpec, compile_rule

log = logging.getLogger("rewards.actions.rules")

_compiled: dict[str, CompiledRule] = {}
# The live set as last built: its version ids, and the set (with its per-type plans).
_live: tuple[frozenset[str], RuleSet] | None = None
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


def _live_version_ids(session: Session) -> frozenset[str]:
    return frozenset(str(version_id) for version_id in session.scalars(
        select(RuleVersion.id)
        .join(Rule, Rule.id == RuleVersion.rule_id)
        .where(RuleVersion.version == Rule.current_version, RuleVersion.status == "active")
    ))


def live_rules(session: Session) -> RuleSet:
    """The rules that award now: each rule's current version, if it is active. One
    small query per call; versions are loaded and compiled only when new to this process."""
    global _live
    ids = _live_version_ids(session)
    live = _live
    if live is not None and live[0] == ids:
        return live[1]
    with _lock:
        # Under the lock: another thread may have just pruned what this set needs.
        missing = [uuid.UUID(key) for key in ids if key not in _compiled]
        if missing:
            for version in session.scalars(select(RuleVersion).where(RuleVersion.id.in_(missing))):
                _compiled[str(version.id)] = compiled(spec_of(version))
        ruleset = RuleSet(_compiled[key] for key in ids)
        gone = [key for key in _compiled if key not in ids]
        for key in gone:
            del _compiled[key]
        forget_failures(gone)
        _live = (ids, ruleset)
    return ruleset


def cached_version_ids() -> frozenset[str]:
    """The rule versions this process holds compiled (for tests and diagnostics)."""
    return frozenset(_compiled)


def clear_cache() -> None:
    global _live
    with _lock:
        _compiled.clear()
        _live = None


# -- run-time failures, logged once -----------------------------------------------------

# (rule version id, message) pairs already logged by this process, oldest first.
_logged: OrderedDict[tuple[str, str], None] = OrderedDict()
_logged_lock = threading.Lock()
MAX_LOGGED_FAILURES = 1000


def forget_failures(version_ids: Iterable[str]) -> None:
    gone = set(version_ids)
    if not gone:
        return
    with _logged_lock:
        for key in [key for key in _logged if key[0] in gone]:
            del _logged[key]


def log_rule_failures(errors: Iterable[tuple[RuleSpec, str]], action_id: Any) -> int:
    """Log each rule failure once per (rule version, message) per process: a broken rule
    fails on every matching action, and one line says as much as a thousand. Later
    repeats go to debug. Returns how many lines were logged at warning level."""
    logged = 0
    for spec, message in errors:
        key = (spec.version_id, message)
        with _logged_lock:
            first = key not in _logged
            if first:
                _logged[key] = None
                while len(_logged) > MAX_LOGGED_FAILURES:
                    _logged.popitem(last=False)
        if first:
            log.warning("rule %s v%s failed on action %s: %s (logged once per rule version "
                        "and message; every action it fails on is flagged for review)",
                        spec.name, spec.version, action_id, message)
            logged += 1
        else:
            log.debug("rule %s v%s failed again on action %s: %s",
                      spec.name, spec.version, action_id, message)
    return logged

"""Which awards one action earns: the live rules evaluated on it with its member's facts
and the cap and budget use so far. Pure: no database, no rows (rows.py writes them)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..rules import CompiledRule, Evaluation, build_context, evaluate
from .usage import RulePlan, UsageBook

log = logging.getLogger("rewards.actions")

# One award larger than this is a formula gone wrong (or fed absurd attributes), not
# a reward: the rule is treated as failed and the action flagged.
MAX_AWARD_POINTS = 1_000_000


@dataclass
class Item:
    """An action as it arrived (a batch item that passed validation, or a stored one)."""

    index: int
    external_ref: str
    type_code: str
    occurred_at: datetime
    attributes: dict[str, Any]
    card: tuple[str, str] | None = None
    member_id: uuid.UUID | None = None


@dataclass
class Accepted:
    """An item that will be recorded, with what evaluating it needs."""

    item: Item
    member_id: uuid.UUID
    action_id: uuid.UUID
    plans: list[RulePlan]  # the live rules that apply to it
    windows: dict[str, datetime]  # period -> start of the window it falls in


def decide(
    work: Accepted,
    member: Mapping[str, Any],
    book: UsageBook,
    rules: Sequence[CompiledRule],
    now: datetime,
    tz: str,
) -> Evaluation:
    """Evaluate the `rules` on one action: its decisions (points, or the cap that stopped
    them) and the rules that failed on it. The engine failing outside any one rule
    fails every rule that applies; an award over MAX_AWARD_POINTS fails its rule.
    `work.plans` are the rules that apply: with none, the engine is not asked."""
    if not work.plans:
        return Evaluation()
    item = work.item
    context = build_context(item.type_code, item.occurred_at, item.attributes, member,
                            now, tz)
    usage = book.usage_for(work.member_id, work.plans, work.windows)
    try:
        evaluation = evaluate(rules, item.type_code, item.occurred_at, context, usage)
    except Exception as error:  # noqa: BLE001 - the engine failed outside any one rule
        log.exception("rules engine failed on action %s", work.action_id)
        message = f"{type(error).__name__}: {str(error)[:200]}"
        return Evaluation(errors=[(plan.rule.spec, message) for plan in work.plans])
    for decision in list(evaluation.decisions):
        if decision.points > MAX_AWARD_POINTS:
            evaluation.decisions.remove(decision)
            evaluation.errors.append((decision.spec, (
                f"points formula gave {decision.points}, more than one award may give "
                f"({MAX_AWARD_POINTS})")))
    return evaluation


def flag_reason(evaluation: Evaluation) -> str | None:
    """Why an action is flagged: the rules that failed on it, or None."""
    if not evaluation.errors:
        return None
    return "; ".join(f"rule {spec.name} v{spec.version} failed: {message}"
                     for spec, message in evaluation.errors)


"""Cap and budget use: how much of each cap (per member, rule and period window) and
of each rule's budget is spent, read from the database once per batch and counted
forward in memory as points are awarded. Read only under the locks of locks.py."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, literal_column, select, text, union_all
from sqlalchemy.orm import Session

from ..bulk import chunks, one_of, pg_array
from ..models import Action, Award, Rule
from ..rules import PERIODS, CompiledRule, Usage, period_bounds

# (member, rule id, period, window start): the key of a cap's use.
WindowKey = tuple[uuid.UUID, str, str, datetime]


@dataclass(frozen=True)
class RulePlan:
    """What the batch needs of one live rule, worked out once per batch."""

    rule: CompiledRule
    periods: tuple[str, ...]  # periods with a cap on actions or points
    rule_id: uuid.UUID
    version_id: uuid.UUID


def rule_plans(rules: Sequence[CompiledRule]) -> dict[str, RulePlan]:
    """Plans by rule version id."""
    return {
        rule.spec.version_id: RulePlan(
            rule,
            tuple(p for p in PERIODS if p in rule.spec.caps or p in rule.spec.points_caps),
            uuid.UUID(rule.spec.rule_id),
            uuid.UUID(rule.spec.version_id),
        )
        for rule in rules
    }


# One statement for every (member, rule, window) triple, unnested from arrays: its text
# never changes (so it is prepared once), and LATERAL makes each triple one range scan
# of ix_awards_rule_member_occurred whatever the planner thinks of the table's size.
_USAGE_SQL = text("""
SELECT w.n, u.count, u.points
FROM unnest(CAST(CAST(:members AS text) AS uuid[]), CAST(CAST(:rules AS text) AS uuid[]),
            CAST(CAST(:starts AS text) AS timestamptz[]),
            CAST(CAST(:ends AS text) AS timestamptz[]))
     WITH ORDINALITY AS w(member_id, rule_id, starts, ends, n)
CROSS JOIN LATERAL (
    SELECT count(*) AS count, coalesce(sum(a.points), 0) AS points FROM awards AS a
    WHERE a.rule_id = w.rule_id AND a.member_id = w.member_id
      AND a.occurred_at >= w.starts AND a.occurred_at < w.ends AND a.points > 0
      AND a.revoked_at IS NULL
) AS u
WHERE u.count > 0
""")
# Outside PostgreSQL: grouped selects, one per window and UNION ALL'd this many a query.
_BRANCHES_PER_QUERY = 8


@dataclass
class UsageBook:
    """Cap and budget use for one batch: read from the stored awards once, for every
    (member, rule, period window) the batch touches, then counted forward in memory as
    the batch awards points. Awards of zero points use no cap, so only awards with
    points count, and those of revoked actions no longer do. A budget's use is the
    rule's running total (rules.points_awarded), read under the rule's lock."""

    windows: dict[WindowKey, tuple[int, int]] = field(default_factory=dict)
    budgets: dict[str, int] = field(default_factory=dict)

    def load(self, session: Session, postgres: bool,
             wanted: Mapping[WindowKey, datetime], budgeted: set[str]) -> None:
        """`wanted`: each key with the end of its window."""
        if postgres:
            self._load_postgres(session, wanted)
        else:
            self._load_grouped(session, wanted)
        if budgeted:
            self.budgets.update(dict.fromkeys(budgeted, 0))
            for condition in one_of(postgres, Rule.id, {uuid.UUID(r) for r in budgeted}):
                for rule_id, spent in session.execute(
                    select(Rule.id, Rule.points_awarded).where(condition)
                ):
                    self.budgets[str(rule_id)] = int(spent)

    def _load_postgres(self, session: Session, wanted: Mapping[WindowKey, datetime]) -> None:
        """One statement: the exact (member, rule, window) triples, unnested from arrays."""
        keys = list(wanted)
        if not keys:
            return
        rows = session.execute(_USAGE_SQL, {
            "members": pg_array(key[0] for key in keys),
            "rules": "{" + ",".join(key[1] for key in keys) + "}",
            "starts": pg_array(key[3] for key in keys),
            "ends": pg_array(wanted.values()),
        })
        for n, count, points in rows:
            self.windows[keys[n - 1]] = (int(count), int(points))

    def _load_grouped(self, session: Session, wanted: Mapping[WindowKey, datetime]) -> None:
        """One grouped select per (period, window), members and rules as IN lists."""
        by_window: dict[tuple[str, datetime, datetime], tuple[set[str], set[uuid.UUID]]] = {}
        for (member_id, rule_id, period, start), end in wanted.items():
            rule_ids, member_ids = by_window.setdefault((period, start, end), (set(), set()))
            rule_ids.add(rule_id)
            member_ids.add(member_id)
        branches = []
        labels: list[tuple[str, datetime]] = []
        for (period, start, end), (rule_ids, member_ids) in sorted(by_window.items()):
            rules = sorted(uuid.UUID(rule_id) for rule_id in rule_ids)
            for members in chunks(sorted(member_ids)):
                branch = select(
                    literal_column(str(len(labels))).label("w"), Award.member_id,
                    Award.rule_id, func.count(Award.id), func.coalesce(func.sum(Award.points), 0),
                ).where(Award.rule_id.in_(rules), Award.member_id.in_(members),
                        Award.points > 0, Award.revoked_at.is_(None))
                if period != "lifetime":
                    branch = branch.where(Award.occurred_at >= start, Award.occurred_at < end)
                branches.append(branch.group_by(Award.member_id, Award.rule_id))
                labels.append((period, start))
        for group in chunks(branches, _BRANCHES_PER_QUERY):
            statement = group[0] if len(group) == 1 else union_all(*group)
            for label, member_id, rule_id, count, points in session.execute(statement):
                period, start = labels[int(label)]
                self.windows[(member_id, str(rule_id), period, start)] = (int(count),
                                                                          int(points))

    def usage_for(self, member_id: uuid.UUID, plans: Sequence[RulePlan],
                  windows: Mapping[str, datetime]) -> Usage:
        """What the rules have used for this member in the windows (period -> start)
        of one action."""
        usage = Usage()
        for plan in plans:
            spec = plan.rule.spec
            rule_id = spec.rule_id
            for period in plan.periods:
                count, points = self.windows.get((member_id, rule_id, period, windows[period]),
                                                 (0, 0))
                usage.counts[(rule_id, period)] = count
                usage.points[(rule_id, period)] = points
            if spec.budget_points is not None:
                usage.budget_spent[rule_id] = self.budgets.get(rule_id, 0)
        return usage

    def record(self, member_id: uuid.UUID, plan: RulePlan, points: int,
               windows: Mapping[str, datetime]) -> None:
        rule_id = plan.rule.spec.rule_id
        for period in plan.periods:
            key = (member_id, rule_id, period, windows[period])
            count, total = self.windows.get(key, (0, 0))
            self.windows[key] = (count + 1, total + points)
        if plan.rule.spec.budget_points is not None:
            self.budgets[rule_id] = self.budgets.get(rule_id, 0) + points


def actions_totals(
    session: Session, postgres: bool, members: Mapping[uuid.UUID, Any],
    rules: Sequence[CompiledRule],
) -> dict[uuid.UUID, int] | None:
    """Each member's accepted actions so far (`member.actions_total`, counted forward
    through the batch), read under the member locks; None, and no query, when no live
    rule mentions it: it costs a count over each member's whole history."""
    if not any("actions_total" in rule.spec.condition or "actions_total" in rule.spec.points
               for rule in rules):
        return None
    totals: dict[uuid.UUID, int] = {}
    for condition in one_of(postgres, Action.member_id, members):
        for member_id, count in session.execute(
            select(Action.member_id, func.count(Action.id))
            .where(condition, Action.status == "accepted").group_by(Action.member_id)
        ):
            totals[member_id] = int(count)
    return totals


@dataclass
class WantedUse:
    """What a batch's UsageBook must read: each (member, rule, period window) some
    action falls in, with the window's end, and the rules with a budget. Windows are
    worked out once per (period, local date)."""

    tz: str
    windows: dict[WindowKey, datetime] = field(default_factory=dict)
    budgeted: set[str] = field(default_factory=set)
    _bounds: dict[tuple[str, date], tuple[datetime, datetime]] = field(default_factory=dict)

    def add(self, member_id: uuid.UUID, applicable: Sequence[RulePlan], occurred_at: datetime,
            local_day: date) -> dict[str, datetime]:
        """The windows (period -> start) one action falls in under the caps of the rules
        that apply to it (`local_day`: the scheme-local date it happened on)."""
        windows: dict[str, datetime] = {}
        for plan in applicable:
            spec = plan.rule.spec
            for period in plan.periods:
                # A window depends only on the local date the action falls on.
                window = self._bounds.get((period, local_day))
                if window is None:
                    window = self._bounds[(period, local_day)] = period_bounds(
                        occurred_at, period, self.tz)
                windows[period] = window[0]
                self.windows[(member_id, spec.rule_id, period, window[0])] = window[1]
            if spec.budget_points is not None:
                self.budgeted.add(spec.rule_id)
        return windows


class ReplayUsage:
    """Cap and budget use counted from nothing, for a replay (rule simulation): per
    member, rule and period window (named by the local day, week or month it falls
    in), and per rule. Only what some cap or budget measures is counted."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.windows: dict[tuple[Any, ...], list[int]] = {}
        self.spent: dict[str, int] = {}
        # Per rule, the periods its caps measure, and whether it has a budget.
        self._measured: dict[str, tuple[tuple[str, ...], bool]] = {}
        for rule in rules:
            spec = rule.spec
            periods = tuple(p for p in PERIODS if p in spec.caps or p in spec.points_caps)
            if periods or spec.budget_points is not None:
                self._measured[spec.rule_id] = (periods, spec.budget_points is not None)
        self._by_type: dict[str, list[tuple[str, tuple[str, ...], bool]]] = {}
        self._rules = rules

    def _counting(self, action_type: str) -> list[tuple[str, tuple[str, ...], bool]]:
        found = self._by_type.get(action_type)
        if found is None:
            found = self._by_type[action_type] = [
                (rule.spec.rule_id, *self._measured[rule.spec.rule_id]) for rule in self._rules
                if action_type in rule.spec.action_types and rule.spec.rule_id in self._measured
            ]
        return found

    def usage(self, member: int, action_type: str, windows: dict[str, Any]) -> Usage:
        usage = Usage()
        for rule_id, periods, budgeted in self._counting(action_type):
            for period in periods:
                entry = self.windows.get((member, rule_id, period, windows[period]))
                if entry is not None:
                    usage.counts[(rule_id, period)] = entry[0]
                    usage.points[(rule_id, period)] = entry[1]
            if budgeted:
                usage.budget_spent[rule_id] = self.spent.get(rule_id, 0)
        return usage

    def record(self, member: int, rule_id: str, points: int, windows: dict[str, Any]) -> None:
        measured = self._measured.get(rule_id)
        if measured is None:
            return
        periods, budgeted = measured
        for period in periods:
            key = (member, rule_id, period, windows[period])
            entry = self.windows.get(key)
            if entry is None:
                self.windows[key] = [1, points]
            else:
                entry[0] += 1
                entry[1] += points
        if budgeted:
            self.spent[rule_id] = self.spent.get(rule_id, 0) + points

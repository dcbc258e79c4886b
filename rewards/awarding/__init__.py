"""Awarding: how an action earns points. Every way points are earned comes here: a
source's batch and a CSV import (through actions.ingest), an event claim
(actions.claims) and a reviewer's approval (actions.reviews) through award_stored;
rule simulation (actions.simulate) counts caps and budgets with ReplayUsage.

Each module imports only those listed after it (and the ledger, never back):
  deferred.py   AWARDING="deferred": batches queued on arrival, awarded by a worker
  stored.py     one stored action, start to end (claims, reviews)
  batch.py      many actions in one transaction (a batch inline, or queued batches)
  rows.py       the action and award rows; the earn postings go to ledger.post_earns
  decisions.py  which awards an action earns (pure: the rules engine, no database)
  usage.py      cap and budget use, read once under the locks, counted forward
  locks.py      member rows, then live rule rows, in id order: taken before any read
"""

from .batch import Decided, Planner, award_many
from .decisions import MAX_AWARD_POINTS, Accepted, Item, decide, flag_reason
from .deferred import (
    MOST_BATCHES,
    AwardRun,
    award_queued,
    on_batch_awarded,
    queue_for_award,
    queue_strays,
)
from .locks import lock_for_awards, lock_for_reversals, lock_live_rules, lock_rules
from .rows import Writes, action_row, award_points
from .stored import Awarded, MemberGone, award_stored
from .usage import (
    ReplayUsage,
    RulePlan,
    UsageBook,
    WantedUse,
    WindowKey,
    actions_totals,
    rule_plans,
)

__all__ = [
    "MAX_AWARD_POINTS",
    "MOST_BATCHES",
    "Accepted",
    "AwardRun",
    "Awarded",
    "Decided",
    "Item",
    "MemberGone",
    "Planner",
    "ReplayUsage",
    "RulePlan",
    "UsageBook",
    "WantedUse",
    "WindowKey",
    "Writes",
    "action_row",
    "actions_totals",
    "award_many",
    "award_points",
    "award_queued",
    "award_stored",
    "decide",
    "flag_reason",
    "lock_for_awards",
    "lock_for_reversals",
    "lock_live_rules",
    "lock_rules",
    "on_batch_awarded",
    "queue_for_award",
    "queue_strays",
    "rule_plans",
]

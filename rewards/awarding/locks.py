"""The locks every way of awarding takes before it reads anything that decides: the
members' rows, then the rows of the live rules that may award, each in id order."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from ..actions.rulebook import live_rules
from ..bulk import is_postgres, one_of
from ..models import Award, Member, Rule
from ..rules import CompiledRule, RuleSet


def lock_for_awards(session: Session, member_ids: Collection[uuid.UUID],
                    lock: bool = True) -> dict[uuid.UUID, Row[Any]]:
    """Caps are counted per member from the awards already stored and budgets per rule
    from its running total (rules.points_awarded), so two transactions awarding at once
    must not both read the same counts and then both award. Anything that awards under
    rules takes the locks first, then reads: each member's row (here), then the row of
    each live rule that may award (lock_live_rules), each in id order (no lock cycles),
    until commit. A reversal takes rule rows only, in the same order. FOR NO KEY
    UPDATE, so inserts that merely reference the rows (actions, awards, postings) and
    spenders (who lock the member's account) are not blocked. On SQLite this renders
    nothing: BEGIN IMMEDIATE already lets one writer in at a time. Returns the locked
    members' rows (id, ward, joined_at, erased_at), read under the lock."""
    postgres = is_postgres(session)
    members: dict[uuid.UUID, Row[Any]] = {}
    for condition in one_of(postgres, Member.id, member_ids):
        statement = (select(Member.id, Member.ward, Member.joined_at, Member.erased_at,
                            Member.travel_data_withheld)
                     .where(condition).order_by(Member.id))
        if lock:
            statement = statement.with_for_update(key_share=True)
        for row in session.execute(statement):
            members[row.id] = row
    return members


def lock_live_rules(session: Session, type_codes: Collection[str]) -> RuleSet:
    """Lock the rows of the live rules for these action types (only those: a leisure
    centre's batch does not wait on a bus operator's rules), then return the live rules
    as they stand once the locks are held. An edit or status change locks its rule's
    row too, so one that committed while this waited is seen: no batch awards under a
    version, or without a budget, that is no longer live. A rule that became live for
    these types only meanwhile is left out: its row is not locked (locking it now would
    break the id order), and it applies from the next batch."""
    postgres = is_postgres(session)

    def for_types(rules: Sequence[CompiledRule]) -> set[uuid.UUID]:
        return {uuid.UUID(rule.spec.rule_id) for rule in rules
                if not set(type_codes).isdisjoint(rule.spec.action_types)}

    before = live_rules(session)
    locked = for_types(before)
    lock_rules(session, locked, postgres)
    rules = live_rules(session)
    if rules is not before:
        late = for_types(rules) - locked
        if late:
            rules = RuleSet(rule for rule in rules if uuid.UUID(rule.spec.rule_id) not in late)
    return rules


def lock_rules(session: Session, rule_ids: Iterable[uuid.UUID],
               postgres: bool | None = None) -> None:
    """Row locks on the rules, in id order, until commit (see lock_for_awards)."""
    if postgres is None:
        postgres = is_postgres(session)
    for condition in one_of(postgres, Rule.id, set(rule_ids)):
        session.execute(
            select(Rule.id).where(condition).order_by(Rule.id).with_for_update(key_share=True)
        )


def lock_for_reversals(session: Session, member_ids: Collection[uuid.UUID],
                       action_ids: Collection[uuid.UUID]) -> None:
    """Before reversing actions' awards (after the members' account locks, see
    ledger.lock_member): the members' rows, then the rows of the rules the actions were
    awarded under, each in id order, as awarding takes them. A reversal moves the
    rules' running totals last, once it has written its lines; the lines' trigger
    locks the members' running totals. Without the rule rows held first, a reversal
    held a member's totals while waiting for a rule's row that a batch awarding the
    same member held while it waited for those totals: a deadlock, one of the two
    failing."""
    postgres = is_postgres(session)
    lock_for_awards(session, member_ids)
    rule_ids: set[uuid.UUID] = set()
    for condition in one_of(postgres, Award.action_id, set(action_ids)):
        rule_ids.update(session.scalars(select(Award.rule_id).where(condition).distinct()))
    lock_rules(session, rule_ids, postgres)

"""Staff accounts: listing them and taking one out of use. Shared by `rewards staff ...`
and the admin API (`/v1/admin/staff`); both write an audit entry for a deactivation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEntry, StaffUser
from .sessions import revoke_all


class StaffRefused(Exception):
    """The change would leave the scheme in a state nobody wants (e.g. without an admin)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Actor:
    """Who asks: a staff user through the API, or the operator at the command line."""

    id: uuid.UUID | None
    role: str


COMMAND_LINE = Actor(None, "command_line")


def list_staff(session: Session, include_inactive: bool = True) -> list[StaffUser]:
    query = select(StaffUser).order_by(StaffUser.email)
    if not include_inactive:
        query = query.where(StaffUser.active.is_(True))
    return list(session.scalars(query))


def find_by_email(session: Session, email: str) -> StaffUser | None:
    return session.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))


def deactivate(session: Session, user: StaffUser, actor: Actor) -> bool:
    """Take `user` out of use (they can no longer log in, and tokens already given stop
    working on their next request). Returns False when they were inactive already.
    Refuses to deactivate the caller themself or the last active admin. Does not commit."""
    if actor.id is not None and actor.id == user.id:
        raise StaffRefused("You cannot deactivate your own account.")
    if not user.active:
        return False
    if user.role == "admin":
        # Lock the admins so two deactivations at once cannot remove the last two.
        admins = session.scalars(
            select(StaffUser.id).where(StaffUser.role == "admin", StaffUser.active.is_(True))
            .with_for_update()
        ).all()
        if len(admins) <= 1:
            raise StaffRefused("This is the last active admin; make another admin first.")
    user.active = False
    revoke_all(session, "deactivated", staff_user_id=user.id)
    session.add(AuditEntry(actor_id=actor.id, actor_role=actor.role, action="deactivate",
                           target_type="staff_user", target_id=str(user.id),
                           details={"email": user.email, "role": user.role}))
    return True


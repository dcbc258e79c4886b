"""Database models, one module per aggregate. Importing this registers them all."""

from . import dashboard, donation, event, privacy, review  # noqa: F401  (their tables join the metadata)
from .action import Action, Award, AwardQueue
from .base import Base, utcnow
from .device import Device, NotificationPreference
from .infra import IdempotencyRecord, OutboxMessage
from .ledger import Account, MemberTotals, Posting, PostingLine
from .login import LoginSession, LoginThrottle  # noqa: F401  (logins that can end)
from .member import Identifier, Member, OtpCode
from .partner import Offer, Partner, PartnerKey
from .reward import Redemption, Reward
from .scheme import ActionType, Rule, RuleVersion
from .source import Source
from .staff import AuditEntry, StaffUser
from .ward import Ward, WardPostcode

__all__ = [
    "Account",
    "Action",
    "ActionType",
    "AuditEntry",
    "Award",
    "AwardQueue",
    "Base",
    "Device",
    "IdempotencyRecord",
    "Identifier",
    "Member",
    "MemberTotals",
    "NotificationPreference",
    "Offer",
    "OtpCode",
    "OutboxMessage",
    "Partner",
    "PartnerKey",
    "Posting",
    "PostingLine",
    "Redemption",
    "Reward",
    "Rule",
    "RuleVersion",
    "Source",
    "StaffUser",
    "Ward",
    "WardPostcode",
    "utcnow",
]

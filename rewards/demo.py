"""`rewards demo`: a Leeds-like scheme loaded through the project's own services.

Wards, action types, earning rules, sources, partners and offers are created the
way the staff API creates them; residents are created and link travel cards the
way the app does; a few weeks of actions go through `ingest_batch` exactly as a
source's signed batches would; some residents claim offers, the jobs issue the
vouchers, and partners redeem about half of them. Everything is drawn from one
seeded generator, so two loads of the same size look the same."""

from __future__ import annotations

import logging
import random
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import jobs
from .actions.ingest import ingest_batch
from .dashboard.refresh import refresh
from .demo_history import CAMPAIGN, load_history
from .extensions import db
from .ledger import member_balances
from .linking import rotate_secret, secret_for
from .members import create_member, find_member_by_card, link_card, normalise_email
from .models import (
    Action,
    ActionType,
    AuditEntry,
    Award,
    Member,
    Offer,
    Partner,
    Reward,
    Rule,
    RuleVersion,
    Source,
    utcnow,
)
from .models.partner import PARTNER_KINDS
from .models.scheme import CATEGORIES
from .rules import PERIODS, validate_expression
from .security import api_key_hash, new_api_key
from .vouchers import ClaimRefused, claim, redeem
from .wards import load_wards

SEED = 2026
BATCH_SIZE = 1000
MARKER_TYPE = "bus_journey"  # its presence means the demo has been loaded
EMAIL_DOMAIN = "example.org"

def _ward_code(name: str) -> str:
    """A readable code for a demo ward (the council loads its real codes)."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


# Leeds City Council wards, 2018 boundaries.
LEEDS_WARDS: tuple[str, ...] = (
    "Adel & Wharfedale",
    "Alwoodley",
    "Ardsley & Robin Hood",
    "Armley",
    "Beeston & Holbeck",
    "Bramley & Stanningley",
    "Burmantofts & Richmond Hill",
    "Calverley & Farsley",
    "Chapel Allerton",
    "Cross Gates & Whinmoor",
    "Farnley & Wortley",
    "Garforth & Swillington",
    "Gipton & Harehills",
    "Guiseley & Rawdon",
    "Harewood",
    "Headingley & Hyde Park",
    "Horsforth",
    "Hunslet & Riverside",
    "Killingbeck & Seacroft",
    "Kippax & Methley",
    "Kirkstall",
    "Little London & Woodhouse",
    "Middleton Park",
    "Moortown",
    "Morley North",
    "Morley South",
    "Otley & Yeadon",
    "Pudsey",
    "Rothwell",
    "Roundhay",
    "Temple Newsam",
    "Weetwood",
    "Wetherby",
)

# (code, name, category, description)
ACTION_TYPES: tuple[tuple[str, str, str, str], ...] = (
    ("bus_journey", "Bus journey", "travel", "A tap on a West Yorkshire bus."),
    ("train_journey", "Train journey", "travel", "A rail journey; distance_km from the operator."),
    ("cycle_hire", "Cycle hire", "travel", "A hire of a city bike."),
    ("volunteering_hour", "Volunteering", "volunteering",
     "A volunteering session confirmed by the organiser; hours in attributes."),
    ("leisure_visit", "Leisure centre visit", "health", "A visit to an Active Leeds centre."),
    ("parkrun", "parkrun", "health", "A Saturday parkrun, by event claim code."),
    ("home_insulation", "Home insulation", "housing",
     "Loft or wall insulation installed, confirmed by the installer's certificate."),
    ("recycling_drop", "Recycling drop-off", "climate",
     "Recycling left at a household waste and recycling centre."),
)

# Welsh names and descriptions of the action types above.
ACTION_TYPES_CY: dict[str, tuple[str, str]] = {
    "bus_journey": ("Taith fws", "Tap ar fws yng Ngorllewin Swydd Efrog."),
    "train_journey": ("Taith trên", "Taith reilffordd; y pellter gan y cwmni trenau."),
    "cycle_hire": ("Llogi beic", "Llogi un o feiciau'r ddinas."),
    "volunteering_hour": ("Gwirfoddoli", "Sesiwn wirfoddoli wedi'i chadarnhau gan y trefnydd."),
    "leisure_visit": ("Ymweliad â chanolfan hamdden", "Ymweliad â chanolfan Active Leeds."),
    "parkrun": ("parkrun", "parkrun ar fore Sadwrn, drwy god hawlio'r digwyddiad."),
    "home_insulation": ("Inswleiddio'r cartref", "Inswleiddio'r llofft neu'r waliau, wedi'i "
                        "gadarnhau gan dystysgrif y gosodwr."),
    "recycling_drop": ("Ailgylchu", "Ailgylchu wedi'i adael mewn canolfan ailgylchu."),
}

EAST_LEEDS = ("Gipton & Harehills", "Killingbeck & Seacroft", "Burmantofts & Richmond Hill")


@dataclass(frozen=True)
class RuleDef:
    name: str
    action_types: tuple[str, ...]
    points: str
    condition: str = "true"
    caps: dict[str, int] = field(default_factory=dict)
    points_caps: dict[str, int] = field(default_factory=dict)
    hold_days: int = 0
    priority: int = 0
    stackable: bool = True
    description: str | None = None


RULES: tuple[RuleDef, ...] = (
    RuleDef(
        "Bus journey", ("bus_journey",),
        "(action.hour < 7 or action.hour >= 19 or action.weekday >= 6) ? 15 : 10",
        caps={"per_day": 4},
        description="10 points a journey, 15 off-peak (before 7, from 19, weekends); "
        "up to 4 journeys a day.",
    ),
    RuleDef(
        "Train journey", ("train_journey",),
        "round(5 + action.attributes.distance_km)",
        condition="action.attributes.distance_km > 0",
        caps={"per_day": 2},
        description="5 points plus one a kilometre; up to 2 journeys a day.",
    ),
    RuleDef(
        "Cycle hire", ("cycle_hire",), "8", caps={"per_day": 2},
        description="8 points a hire; up to 2 a day.",
    ),
    RuleDef(
        "Volunteering", ("volunteering_hour",), "20 * action.attributes.hours",
        condition="action.attributes.hours > 0",
        caps={"per_week": 10},
        description="20 points an hour volunteered; up to 10 sessions a week.",
    ),
    RuleDef(
        "Leisure centre visit", ("leisure_visit",), "15", caps={"per_day": 1},
        description="15 points for a visit; once a day.",
    ),
    RuleDef(
        "parkrun", ("parkrun",), "20", caps={"per_week": 1},
        description="20 points for a parkrun; once a week.",
    ),
    RuleDef(
        "Recycling drop-off", ("recycling_drop",), "5",
        description="5 points a drop-off.",
    ),
    RuleDef(
        "Home insulation", ("home_insulation",), "500", caps={"lifetime": 1}, hold_days=0,
        description="500 points, once per member, spendable at once.",
    ),
    RuleDef(
        "East Leeds travel boost", ("bus_journey", "train_journey"), "5",
        condition="member.ward in [" + ", ".join(f'"{w}"' for w in EAST_LEEDS) + "]",
        caps={"per_day": 2},
        description="5 extra points a journey for residents of the east Leeds pilot wards; "
        "up to 2 a day. Stacks with the journey rules.",
    ),
)

# The rules' names in Welsh, as members read them on their statements.
RULES_CY: dict[str, str] = {
    "Bus journey": "Taith bws",
    "Train journey": "Taith trên",
    "Cycle hire": "Llogi beic",
    "Volunteering": "Gwirfoddoli",
    "Leisure centre visit": "Ymweliad â chanolfan hamdden",
    "parkrun": "parkrun",
    "Recycling drop-off": "Ailgylchu",
    "Home insulation": "Inswleiddio'r cartref",
    "East Leeds travel boost": "Hwb teithio Dwyrain Leeds",
}

# (name, action types, external_ref prefix)
SOURCES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("First Bus West Yorkshire", ("bus_journey",), "fbwy"),
    ("Northern Trains", ("train_journey",), "ntr"),
    ("Leeds Leisure Centres", ("leisure_visit",), "alc"),
    ("Voluntary Action Leeds", ("volunteering_hour",), "val"),
    ("Leeds Recycling", ("recycling_drop", "home_insulation"), "lrc"),
)

PARTNERS: tuple[tuple[str, str], ...] = (
    ("Leeds Leisure Centres (Active Leeds)", "business"),
    ("Laynes Espresso", "business"),
    ("Leeds City Museum", "business"),
    ("Kirkgate Market Traders", "business"),
    ("Leeds Playhouse", "business"),
    ("St George's Crypt", "charity"),
    ("Leeds Food Aid Network", "charity"),
)


@dataclass(frozen=True)
class OfferDef:
    partner: str
    title: str
    cost_points: int
    category: str
    description: str
    stock: int | None = None
    per_member_limit: int | None = None
    voucher_valid_days: int = 30


OFFERS: tuple[OfferDef, ...] = (
    OfferDef("Leeds Leisure Centres (Active Leeds)", "Free swim", 150, "health",
             "One adult swim at any Active Leeds pool."),
    OfferDef("Leeds Leisure Centres (Active Leeds)", "Gym day pass", 200, "health",
             "A day in any Active Leeds gym."),
    OfferDef("Laynes Espresso", "Any hot drink", 80, "food",
             "One hot drink of your choice at Laynes, New Station Street.", stock=200),
    OfferDef("Leeds City Museum", "Family pass to the special exhibition", 120, "culture",
             "Two adults and up to three children."),
    OfferDef("Kirkgate Market Traders", "£5 to spend at Kirkgate Market", 250, "food",
             "Accepted by every participating trader.", voucher_valid_days=60),
    OfferDef("Leeds Playhouse", "£10 off a theatre ticket", 400, "culture",
             "Off one full-price ticket for any Playhouse production.",
             stock=50, per_member_limit=2),
)

# The offers in Welsh: (title, description).
OFFERS_CY: dict[str, tuple[str, str]] = {
    "Free swim": ("Nofio am ddim", "Un sesiwn nofio i oedolyn yn unrhyw bwll Active Leeds."),
    "Gym day pass": ("Tocyn diwrnod campfa", "Diwrnod yn unrhyw gampfa Active Leeds."),
    "Any hot drink": ("Unrhyw ddiod boeth",
                      "Un ddiod boeth o'ch dewis yn Laynes, New Station Street."),
    "Family pass to the special exhibition": (
        "Tocyn teulu i'r arddangosfa arbennig", "Dau oedolyn a hyd at dri phlentyn."),
    "£5 to spend at Kirkgate Market": ("£5 i'w wario ym Marchnad Kirkgate",
                                       "Yn cael ei dderbyn gan bob masnachwr sy'n cymryd rhan."),
    "£10 off a theatre ticket": ("£10 oddi ar docyn theatr",
                                 "Oddi ar un tocyn pris llawn ar gyfer unrhyw gynhyrchiad "
                                 "yn y Playhouse."),
}

FIRST_NAMES = (
    "Aisha", "Amir", "Beth", "Callum", "Chloe", "Daniel", "Ellie", "Faisal", "Grace",
    "Hannah", "Harpreet", "Imran", "Jack", "Jade", "Kwame", "Leah", "Liam", "Maya",
    "Mohammed", "Niamh", "Oliver", "Priya", "Rhys", "Sadia", "Sam", "Sophie", "Tom",
    "Usman", "Yasmin", "Zoe", "Agnieszka", "Tomasz", "Chidi", "Mei", "Ravi", "Olena",
)
SURNAME_INITIALS = "ABCDEFGHJKLMNPRSTWY"

BUS_ROUTES = ("1", "4", "6", "16", "19", "33", "42", "49", "50", "51", "56", "72", "X6")
RAIL_TRIPS = (  # (from, to, km)
    ("Headingley", "Leeds", 4), ("Horsforth", "Leeds", 9), ("Cross Gates", "Leeds", 6),
    ("Garforth", "Leeds", 11), ("Morley", "Leeds", 7), ("Guiseley", "Leeds", 14),
    ("Wakefield Westgate", "Leeds", 16), ("Bradford Interchange", "Leeds", 15),
    ("Harrogate", "Leeds", 29), ("Huddersfield", "Leeds", 27), ("York", "Leeds", 40),
)
CENTRES = (
    "John Charles Centre for Sport", "Fearnville", "Kirkstall", "Armley", "Aireborough",
    "Scott Hall", "Morley", "Holt Park Active", "Rothwell", "Wetherby", "Pudsey",
)
ACTIVITIES = ("swim", "gym", "class", "badminton", "climbing")
ORGANISATIONS = (
    "Leeds Community Foundation", "St George's Crypt", "Leeds Food Aid Network",
    "Hyde Park Source", "Friends of Roundhay Park", "Age UK Leeds", "Leeds Mind",
)
RECYCLING_SITES = (
    "Kirkstall Road", "Seacroft", "Meanwood", "East Leeds (Cross Green)", "Otley",
    "Pudsey", "Wetherby", "Garforth", "Middleton", "Yeadon",
)
INSULATION_MEASURES = ("loft insulation", "cavity wall insulation", "solid wall insulation")


@dataclass
class Resident:
    email: str
    display_name: str
    ward: str
    joined_at: datetime
    card: str
    commuter: bool
    rail: tuple[str, str, int] | None
    occasional_bus: bool
    volunteer: bool
    leisure: bool
    recycler: bool
    insulates: bool
    member: Member | None = None


@dataclass
class Totals:
    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    points: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def load_demo(members: int = 300, weeks: int = 4, force: bool = False,
              history_members: int | None = None, history_months: int = 6) -> str:
    """Load the Leeds demo scheme; returns a short summary. Does nothing (and says
    so) if it is already loaded, unless `force`: then what exists is reused and
    another `weeks` of activity is added. Besides the `members` whose weeks go
    through ingest, `history_members` (default ten times as many) joined over the
    last `history_months` months with their activity written in bulk (see
    demo_history), so the staff dashboard has months of figures."""
    session = db.session
    if members < 1 or weeks < 1:
        raise ValueError("members and weeks must be at least 1")
    loaded = session.scalar(select(ActionType.id).where(ActionType.code == MARKER_TYPE))
    if loaded is not None and not force:
        session.rollback()
        return (f"The demo is already loaded (action type {MARKER_TYPE!r} exists); "
                "nothing changed. Use --force to add another load of activity.")

    started = time.monotonic()
    rng = random.Random(SEED)
    # A fresh load draws the same activity every time; a forced reload draws another.
    earlier = _count(session, Action)
    activity_rng = random.Random(SEED if not earlier else f"{SEED}:{earlier}")
    config = current_app.config
    now = utcnow().replace(microsecond=0)
    window_start = now - timedelta(weeks=weeks)
    saved_max_age = config["ACTION_MAX_AGE_DAYS"]
    mail_log = logging.getLogger("rewards.mail")
    saved_mail_level = mail_log.level
    try:
        # Dozens of "your voucher is ready" notes to demo residents would bury the log.
        mail_log.setLevel(logging.WARNING)
        config["ACTION_MAX_AGE_DAYS"] = max(saved_max_age, weeks * 7 + 2)

        types = _action_types(session)
        load_wards(session, ((_ward_code(name), name) for name in LEEDS_WARDS))  # GET /v1/wards
        rules = _rules(session, window_start - timedelta(days=1))
        sources = _sources(session)
        partners = _partners(session)
        offers = _offers(session, partners)
        session.commit()

        residents = _residents(rng, members, window_start)
        _members(session, residents)
        session.commit()
        history = load_history(
            session, random.Random(f"{SEED}:history:{earlier}"),
            members=10 * members if history_members is None else history_members,
            months=history_months, until=now - timedelta(minutes=5),
            timezone=config["SCHEME_TIMEZONE"], wards=LEEDS_WARDS)

        totals = _activity(session, activity_rng, residents, sources, now, window_start,
                           config["SCHEME_TIMEZONE"])

        claimed, issued, redeemed = _rewards(session, rng, residents, offers)
        refresh(session)  # the dashboard's rollups, so its first page is current
    finally:
        config["ACTION_MAX_AGE_DAYS"] = saved_max_age
        mail_log.setLevel(saved_mail_level)

    elapsed = time.monotonic() - started
    return _summary(session, members, weeks, types, rules, sources, partners, offers, totals,
                    claimed, issued, redeemed, residents, elapsed) + (
        f"\n  history: {history['members']:,} more members over {history_months} months, "
        f"{history['actions']:,} actions written in bulk (campaign rule {CAMPAIGN!r}); "
        "ward populations and deprivation deciles are illustrative")


# -- scheme -------------------------------------------------------------------------


def _audit(session: Session, target_type: str, target_id: Any, **details: Any) -> None:
    session.add(AuditEntry(actor_id=None, actor_role="system", action="create",
                           target_type=target_type, target_id=str(target_id),
                           details={"via": "rewards demo", **details}))


def _action_types(session: Session) -> list[ActionType]:
    result = []
    for code, name, category, description in ACTION_TYPES:
        assert category in CATEGORIES, category
        action_type = session.scalar(select(ActionType).where(ActionType.code == code))
        if action_type is None:
            welsh = ACTION_TYPES_CY.get(code)
            action_type = ActionType(code=code, name=name, category=category,
                                     description=description, translations={
                                         "cy": {"name": welsh[0], "description": welsh[1]}}
                                     if welsh else {})
            session.add(action_type)
            session.flush()
            _audit(session, "action_type", action_type.id, code=code)
        result.append(action_type)
    return result


def _rules(session: Session, starts_at: datetime) -> list[Rule]:
    known = {code for code, *_ in ACTION_TYPES}
    result = []
    for spec in RULES:
        # Refuse a bad rule loudly, as the staff API would with a 422.
        validate_expression(spec.condition, "boolean")
        validate_expression(spec.points, "number")
        unknown = set(spec.action_types) - known
        if unknown:
            raise ValueError(f"rule {spec.name!r} names unknown action types {sorted(unknown)}")
        for caps in (spec.caps, spec.points_caps):
            if set(caps) - set(PERIODS):
                raise ValueError(f"rule {spec.name!r} has an unknown cap period")
        rule = session.scalar(select(Rule).where(Rule.name == spec.name))
        if rule is None:
            rule = Rule(id=uuid.uuid4(), name=spec.name, current_version=1,
                        translations={"cy": {"name": RULES_CY[spec.name]}})
            session.add(rule)
            session.add(RuleVersion(
                rule_id=rule.id,
                version=1,
                name=spec.name,
                description=spec.description,
                action_types=list(spec.action_types),
                condition=spec.condition,
                points=spec.points,
                caps=dict(spec.caps),
                points_caps=dict(spec.points_caps),
                starts_at=starts_at,
                ends_at=None,
                budget_points=None,
                priority=spec.priority,
                stackable=spec.stackable,
                hold_days=spec.hold_days,
                status="active",
                created_by=None,
            ))
            session.flush()
            _audit(session, "rule", rule.id, version=1, name=spec.name)
        result.append(rule)
    return result


def _sources(session: Session) -> dict[str, tuple[Source, str]]:
    """Sources by action type code, with the prefix for their external refs. Their
    API keys and signing secrets are made and thrown away: only hashes are kept."""
    by_type: dict[str, tuple[Source, str]] = {}
    for name, action_types, prefix in SOURCES:
        source = session.scalar(select(Source).where(Source.name == name))
        if source is None:
            source = Source(name=name, action_types=list(action_types),
                            api_key_hash=api_key_hash(new_api_key("src")),
                            signing_secret=secrets.token_hex(32))
            session.add(source)
            session.flush()
            _audit(session, "source", source.id, name=name)
        for code in action_types:
            by_type[code] = (source, prefix)
    return by_type


def _partners(session: Session) -> dict[str, Partner]:
    result = {}
    for name, kind in PARTNERS:
        assert kind in PARTNER_KINDS, kind
        partner = session.scalar(select(Partner).where(Partner.name == name))
        if partner is None:
            partner = Partner(name=name, kind=kind,
                              api_key_hash=api_key_hash(new_api_key("ptn")))
            session.add(partner)
            session.flush()
            _audit(session, "partner", partner.id, name=name)
        result[name] = partner
    return result


def _offers(session: Session, partners: dict[str, Partner]) -> list[Offer]:
    result = []
    for spec in OFFERS:
        partner = partners[spec.partner]
        if partner.kind != "business":
            raise ValueError(f"offer {spec.title!r}: offers belong to business partners")
        offer = session.scalar(
            select(Offer).where(Offer.partner_id == partner.id, Offer.title == spec.title)
        )
        if offer is None:
            offer = Offer(
                partner_id=partner.id,
                title=spec.title,
                description=spec.description,
                category=spec.category,
                cost_points=spec.cost_points,
                stock=spec.stock,
                per_member_limit=spec.per_member_limit,
                voucher_valid_days=spec.voucher_valid_days,
                status="live",
                translations={"cy": dict(zip(("title", "description"),
                                             OFFERS_CY[spec.title], strict=True))},
            )
            session.add(offer)
            session.flush()
            _audit(session, "offer", offer.id, title=spec.title)
        result.append(offer)
    return result


# -- residents ----------------------------------------------------------------------


def _residents(rng: random.Random, count: int, window_start: datetime) -> list[Resident]:
    residents = []
    for n in range(1, count + 1):
        travel = rng.random()
        commuter = travel < 0.58
        rail = rng.choice(RAIL_TRIPS) if 0.58 <= travel < 0.73 else None
        occasional = 0.73 <= travel < 0.95 or (rail is not None and rng.random() < 0.5)
        residents.append(Resident(
            email=f"resident{n:04d}@{EMAIL_DOMAIN}",
            display_name=f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAME_INITIALS)}.",
            ward=rng.choice(LEEDS_WARDS),
            joined_at=window_start - timedelta(days=rng.randint(1, 365),
                                               minutes=rng.randint(0, 1439)),
            card=f"6335{n:012d}",
            commuter=commuter,
            rail=rail,
            occasional_bus=occasional,
            volunteer=rng.random() < 0.15,
            leisure=rng.random() < 0.42,
            recycler=rng.random() < 0.5,
            insulates=rng.random() < 0.02,
        ))
    return residents


def _members(session: Session, residents: list[Resident]) -> None:
    # Cards linked in the app need a link code: the demo's travel operator has a
    # secret, so `rewards link-code --number ...` works on the demo scheme.
    if secret_for(session, "travel_card") is None:
        rotate_secret(session, "travel_card")
    for resident in residents:
        member = session.scalar(
            select(Member).where(Member.email == normalise_email(resident.email))
        )
        if member is None:
            member = create_member(session, email=normalise_email(resident.email),
                                   display_name=resident.display_name, ward=resident.ward,
                                   joined_at=resident.joined_at)
        resident.member = member
        holder = find_member_by_card(session, "travel_card", resident.card)
        if holder is None:
            link_card(session, member, "travel_card", resident.card)
        elif holder != member.id:
            raise RuntimeError(f"demo card for {resident.email} is linked to another member")


# -- activity -----------------------------------------------------------------------


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _days(window_start: datetime, now: datetime, tz: ZoneInfo) -> list[date]:
    first = window_start.astimezone(tz).date()
    last = now.astimezone(tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _activity(
    session: Session,
    rng: random.Random,
    residents: list[Resident],
    sources: dict[str, tuple[Source, str]],
    now: datetime,
    window_start: datetime,
    timezone: str,
) -> Totals:
    tz = ZoneInfo(timezone)
    days = _days(window_start, now, tz)
    latest = now - timedelta(minutes=5)
    # A forced reload adds new activity: its refs must not collide with the last load's.
    stamp = now.strftime("%Y%m%d%H%M%S")
    per_source: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    sequence: dict[str, int] = defaultdict(int)

    def at(day: date, hour: int, minute: int) -> datetime | None:
        moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
        moment = moment.astimezone(UTC)
        return moment if window_start < moment <= latest else None

    def add(resident: Resident, type_code: str, moment: datetime | None,
            attributes: dict[str, Any]) -> None:
        if moment is None:
            return
        source, prefix = sources[type_code]
        sequence[prefix] += 1
        per_source[source.id].append({
            "external_ref": f"{prefix}-{stamp}-{sequence[prefix]:07d}",
            "member": {"kind": "travel_card", "number": resident.card},
            "type": type_code,
            "occurred_at": _rfc3339(moment),
            "attributes": attributes,
        })

    def minute() -> int:
        return rng.randint(0, 59)

    for resident in residents:
        route = rng.choice(BUS_ROUTES)
        centre = rng.choice(CENTRES)
        site = rng.choice(RECYCLING_SITES)
        organisation = rng.choice(ORGANISATIONS)
        for day in days:
            weekend = day.isoweekday() >= 6
            if resident.commuter:
                if not weekend and rng.random() < 0.85:
                    early = rng.random() < 0.12  # shift workers: off-peak
                    add(resident, "bus_journey", at(day, 6 if early else rng.randint(7, 8),
                                                    minute()), {"route": route})
                    add(resident, "bus_journey", at(day, rng.randint(16, 18), minute()),
                        {"route": route})
                    if rng.random() < 0.08:  # an evening out: over the daily cap of 4
                        for hour in (19, 20, 23):
                            add(resident, "bus_journey", at(day, hour, minute()),
                                {"route": rng.choice(BUS_ROUTES)})
                elif weekend and rng.random() < 0.35:
                    for _ in range(rng.randint(1, 2)):
                        add(resident, "bus_journey", at(day, rng.randint(10, 19), minute()),
                            {"route": rng.choice(BUS_ROUTES)})
            if resident.occasional_bus and rng.random() < 0.25:
                add(resident, "bus_journey", at(day, rng.randint(9, 21), minute()),
                    {"route": rng.choice(BUS_ROUTES)})
            if resident.rail and not weekend and rng.random() < 0.7:
                origin, destination, km = resident.rail
                add(resident, "train_journey", at(day, rng.randint(7, 8), minute()),
                    {"from": origin, "to": destination, "distance_km": km})
                add(resident, "train_journey", at(day, rng.randint(16, 18), minute()),
                    {"from": destination, "to": origin, "distance_km": km})
                if rng.random() < 0.05:  # a third trip: over the daily cap of 2
                    add(resident, "train_journey", at(day, 21, minute()),
                        {"from": origin, "to": destination, "distance_km": km})
            if resident.volunteer and rng.random() < (0.45 if weekend else 0.12):
                add(resident, "volunteering_hour", at(day, rng.randint(9, 15), 0),
                    {"hours": rng.choice((1, 1.5, 2, 2, 3, 4)), "organisation": organisation})
            if resident.leisure and rng.random() < 0.3:
                visits = 2 if rng.random() < 0.1 else 1  # a second visit earns nothing
                for hour in sorted(rng.sample(range(6, 21), visits)):
                    add(resident, "leisure_visit", at(day, hour, minute()),
                        {"centre": centre, "activity": rng.choice(ACTIVITIES)})
            if resident.recycler and rng.random() < (0.4 if weekend else 0.1):
                add(resident, "recycling_drop", at(day, rng.randint(9, 17), minute()),
                    {"site": site, "kg": rng.randint(2, 25)})
        if resident.insulates:
            day = rng.choice(days)
            add(resident, "home_insulation", at(day, rng.randint(9, 16), minute()),
                {"measure": rng.choice(INSULATION_MEASURES),
                 "certificate": f"TM-{rng.randint(100000, 999999)}"})

    totals = Totals()
    by_id = {source.id: source for source, _ in sources.values()}
    for source_id, items in per_source.items():
        items.sort(key=lambda item: item["occurred_at"])
        for start in range(0, len(items), BATCH_SIZE):
            batch = items[start:start + BATCH_SIZE]
            # Inside ingest_batch every cap lookup would autoflush the rows the batch
            # has made so far: one flush per action. The batch counts its own cap use
            # in memory (only earlier, committed batches are read back), so the rows can
            # go in the one flush at its end: the same awards, a third less time.
            with session.no_autoflush:
                outcome = ingest_batch(session, by_id[source_id], batch)
            totals.sent += len(batch)
            totals.accepted += outcome.accepted
            totals.points += outcome.points
            for result in outcome.results:
                if result["status"] == "duplicate":
                    totals.duplicate += 1
                elif result["status"] == "rejected":
                    totals.rejected += 1
                    totals.reasons[result["reason"]] += 1
    return totals


# -- rewards ------------------------------------------------------------------------


def _rewards(
    session: Session, rng: random.Random, residents: list[Resident], offers: list[Offer]
) -> tuple[int, int, int]:
    """About a fifth of residents claim something they can afford; the jobs issue the
    vouchers; partners redeem about half of those issued."""
    cheapest = min(offer.cost_points for offer in offers)
    wanted = max(1, round(len(residents) * 0.2))
    candidates = []
    for resident in residents:
        assert resident.member is not None
        available = member_balances(session, resident.member.id).available
        if available >= cheapest:
            candidates.append((resident.member, available))
    session.commit()
    chosen = rng.sample(candidates, min(wanted, len(candidates)))

    reward_ids: list[uuid.UUID] = []
    for member, available in chosen:
        affordable = [offer for offer in offers if offer.cost_points <= available]
        for offer in rng.sample(affordable, len(affordable)):
            try:
                reward = claim(session, member, offer.id)
            except ClaimRefused:
                session.rollback()
                continue
            session.commit()
            reward_ids.append(reward.id)
            break
    jobs.dispatch_pending()

    issued = _issued(session, reward_ids)
    to_redeem = rng.sample(issued, len(issued) // 2)
    redeemed = 0
    for code, partner_id in to_redeem:
        if redeem(session, partner_id, code).status == 201:
            redeemed += 1
    session.commit()
    return len(reward_ids), len(issued), redeemed


def _issued(session: Session, reward_ids: Iterable[uuid.UUID]) -> list[tuple[str, uuid.UUID]]:
    ids = list(reward_ids)
    rows: list[tuple[str, uuid.UUID]] = []
    for start in range(0, len(ids), 500):
        rows += [
            (code, partner_id)
            for code, partner_id in session.execute(
                select(Reward.code, Offer.partner_id)
                .join(Offer, Offer.id == Reward.offer_id)
                .where(Reward.id.in_(ids[start:start + 500]), Reward.status == "issued")
                .order_by(Reward.created_at, Reward.id)
            )
            if code
        ]
    session.commit()
    return rows


# -- summary ------------------------------------------------------------------------


def _count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _summary(
    session: Session,
    members: int,
    weeks: int,
    types: list[ActionType],
    rules: list[Rule],
    sources: dict[str, tuple[Source, str]],
    partners: dict[str, Partner],
    offers: list[Offer],
    totals: Totals,
    claimed: int,
    issued: int,
    redeemed: int,
    residents: list[Resident],
    elapsed: float,
) -> str:
    wards_used = len({resident.ward for resident in residents})
    businesses = sum(1 for p in partners.values() if p.kind == "business")
    charities = len(partners) - businesses
    source_count = len({source.id for source, _ in sources.values()})
    pending = claimed - issued
    in_db = (f"{_count(session, Member)} members, {_count(session, Rule)} rules, "
             f"{_count(session, Offer)} offers")
    capped = int(session.scalar(
        select(func.count(Award.id)).where(Award.capped_by.is_not(None), Award.points == 0)
    ) or 0)
    session.commit()
    lines = [
        f"Leeds demo loaded in {elapsed:.1f} s ({weeks} week{'s' if weeks != 1 else ''} "
        "of activity).",
        f"  wards: {len(LEEDS_WARDS)} (residents live in {wards_used})",
        f"  members: {members} residents, each with a linked travel card",
        f"  action types: {len(types)}; rules: {len(rules)}; sources: {source_count}; "
        f"partners: {len(partners)} ({businesses} businesses, {charities} charities); "
        f"offers: {len(offers)}",
        f"  actions: {totals.accepted:,} accepted of {totals.sent:,} sent"
        + (f" ({totals.duplicate} duplicate, {totals.rejected} rejected)"
           if totals.duplicate or totals.rejected else ""),
        f"  points awarded: {totals.points:,} (awards stopped by a cap so far: {capped:,})",
        f"  vouchers: {claimed} claimed, {issued} issued, {redeemed} redeemed"
        + (f" ({pending} waiting for `rewards worker`)" if pending else ""),
        f"  database now holds {in_db}",
        f"  log in as a resident: POST /v1/auth/otp {{\"email\": \"{residents[0].email}\"}} "
        f"(any resident0001..{members:04d}@{EMAIL_DOMAIN}), then POST /v1/auth/token "
        "{email, code}; on the embedded default (no SMTP_URL) the code is printed in the log.",
        "  source and partner API keys were not kept (only their hashes are stored); "
        "they can be re-issued later.",
    ]
    if totals.reasons:
        top = sorted(totals.reasons.items(), key=lambda kv: -kv[1])[:3]
        lines.append("  rejections: " + "; ".join(f"{n} x {why}" for why, n in top))
    return "\n".join(lines)

"""Welsh for each error reason (rewards/reasons.py): what an error says to a member
who reads Welsh. Every reason has its text here (tests/test_language.py checks)."""

from __future__ import annotations

WELSH: dict[str, str] = {
    "bad_request": "Ni ellir darllen y cais.",
    "unauthenticated": "Mae angen mewngofnodi, neu nid yw'r manylion yn ddilys.",
    "forbidden": "Nid oes gennych hawl i wneud hyn.",
    "not_found": "Heb ei ganfod.",
    "method_not_allowed": "Ni chaniateir y dull hwn yma.",
    "not_acceptable": "Ni ellir ateb yn y fformat a ofynnwyd amdano.",
    "conflict": "Ni ellir gwneud hyn ar hyn o bryd.",
    "gone": "Nid yw ar gael mwyach.",
    "precondition_failed": "Methodd rhagamod y cais.",
    "too_large": "Mae'r cais yn rhy fawr.",
    "uri_too_long": "Mae'r cyfeiriad yn rhy hir.",
    "headers_too_large": "Mae penawdau'r cais yn rhy fawr.",
    "unsupported_media_type": "Ni dderbynnir y math hwn o gynnwys.",
    "invalid_request": "Nid yw'r cais yn ddilys: gweler y gwallau ar gyfer pob maes.",
    "rate_limited": "Gormod o geisiadau; rhowch gynnig arall arni yn nes ymlaen.",
    "internal_error": "Aeth rhywbeth o'i le ar ein hochr ni; mae wedi'i gofnodi.",
    "unavailable": "Mae'r cynllun yn brysur neu ddim ar gael am ennyd; rhowch gynnig "
                   "arall arni cyn bo hir.",
    "invalid_token": "Nid yw'r tocyn yn ddilys neu mae wedi dod i ben.",
    "invalid_credentials": "Nid yw'r manylion yn gywir.",
    "invalid_code": "Nid yw'r cod yn gywir, neu mae wedi dod i ben.",
    "wrong_role": "Ni all y math hwn o gyfrif wneud hyn.",
    "account_gone": "Nid yw'r cyfrif yn bodoli mwyach.",
    "pin_locked": "Gormod o rifau PIN anghywir; rhowch gynnig arall arni yn nes ymlaen.",
    "insufficient_points": "Does dim digon o bwyntiau gennych.",
    "sold_out": "Mae'r cyfan wedi mynd.",
    "limit_reached": "Rydych wedi hawlio'r cynnig hwn gymaint o weithiau ag a ganiateir.",
    "not_eligible": "Nid yw'r cynnig hwn ar gael i chi.",
    "not_open": "Nid yw hwn ar agor eto.",
    "ended": "Mae hwn wedi dod i ben.",
    "already_claimed": "Rydych wedi hawlio hwn yn barod.",
    "code_used": "Mae'r cod hwn wedi'i ddefnyddio'n barod.",
    "voucher_not_found": "Dim taleb o'r fath yma.",
    "voucher_used": "Mae'r daleb hon wedi'i defnyddio'n barod.",
    "voucher_expired": "Mae'r daleb hon wedi dod i ben.",
    "voucher_not_issued": "Nid yw'r daleb wedi'i chyhoeddi eto.",
    "voucher_cancelled": "Mae'r daleb hon wedi'i chanslo.",
    "partner_fulfils": "System y partner ei hun sy'n cyhoeddi'r cynnig hwn.",
    "undo_window_passed": "Mae'n rhy hwyr i ddadwneud hyn.",
    "already_undone": "Mae hyn wedi'i ddadwneud yn barod.",
    "already_exists": "Mae hwn yn bodoli'n barod.",
    "card_linked": "Mae'r cerdyn hwn eisoes wedi'i gysylltu â chyfrif.",
    "account_erased": "Mae'r cyfrif hwn wedi'i ddileu.",
    "wrong_state": "Ni ellir gwneud hyn yn ei gyflwr presennol.",
    "edit_conflict": "Newidiodd rhywun arall hwn ar yr un pryd; llwythwch ef eto a "
                     "rhowch gynnig arall arni.",
    "idempotency_key_reused": "Defnyddiwyd yr Idempotency-Key hwn gyda chais gwahanol.",
    "account_locked": "Mae'r cyfrif wedi'i gloi am ychydig ar ôl gormod o ymdrechion; "
                      "rhowch gynnig arall yn nes ymlaen.",
    "session_ended": "Mae'r sesiwn wedi dod i ben; mewngofnodwch eto.",
    "card_not_proven": "Nid yw'r cod cysylltu'n gywir i'r cerdyn hwn, neu mae wedi dod i ben.",
    "no_consent": "Mae'r aelod wedi tynnu ei ganiatâd i ddata teithio yn ôl.",
    "unknown_ward": "Nid yw hon yn un o wardiau'r cynllun.",
    "ward_changed_recently": "Newidiwyd eich ward yn ddiweddar; cewch ei newid eto yn nes "
                             "ymlaen.",
    "too_many_pending": "Mae gormod o'ch ceisiadau'n aros am benderfyniad; arhoswch i rai "
                        "gael eu hadolygu cyn anfon mwy.",
    "too_many_devices": "Mae gormod o ddyfeisiau ar y cyfrif hwn; tynnwch un yn gyntaf.",
    "too_many_cards": "Mae cymaint o gardiau wedi'u cysylltu â'r cyfrif hwn ag a ganiateir; "
                      "datgysylltwch un yn gyntaf.",
}

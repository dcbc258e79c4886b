"""A client generated from the committed openapi.yaml (openapi-python-client) walks the
resident's journey (login code, balance, offers, claim, voucher) and the till's (check,
redeem, look up) against the app served on a free port: every answer parses into typed
models, with nothing left over in untyped fields."""

from __future__ import annotations

import datetime
import importlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from .conftest import otp_from_mail
from .reward_support import admin_headers, give_points, make_offer, make_partner

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """\
post_hooks: []
package_name_override: rewards_client
project_name_override: rewards_client
content_type_overrides:
  image/svg+xml: application/octet-stream
  image/jpeg: application/octet-stream
  image/png: application/octet-stream
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    work = tmp_path_factory.mktemp("client")
    (work / "config.yaml").write_text(CONFIG)
    tool = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [str(tool), "generate", "--path", str(ROOT / "openapi.yaml"), "--meta", "none",
         "--output-path", str(work / "rewards_client"), "--config", str(work / "config.yaml")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Unsupported content_type" not in done.stdout, done.stdout
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module("rewards_client")
    finally:
        sys.path.remove(str(work))
        for name in [name for name in sys.modules if name.startswith("rewards_client")]:
            del sys.modules[name]


@pytest.fixture
def base_url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def _typed(model: Any) -> Any:
    """Every field of a generated model (and the models inside it) came back typed:
    no undeclared keys collected in additional_properties."""
    assert getattr(model, "additional_properties", {}) == {}, type(model).__name__
    for field in attrs.fields(type(model)):
        value = getattr(model, field.name)
        if field.default is attrs.NOTHING:  # a required field, parsed as its type
            assert type(value).__name__ != "Unset", (type(model).__name__, field.name)
        if attrs.has(type(value)):
            _typed(value)
        elif isinstance(value, list):
            for item in value:
                if attrs.has(type(item)):
                    _typed(item)
    return model


def _module(client_package: Any, name: str) -> Any:
    return importlib.import_module(f"rewards_client.{name}")


def test_resident_and_till_journeys_through_the_generated_client(
        generated: Any, base_url: str, client: FlaskClient, app: Flask) -> None:
    api = lambda name: _module(generated, f"api.{name}")  # noqa: E731
    models = _module(generated, "models")
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, name="Kirkgate Bakery")
    offer = make_offer(client, admin, partner["id"], title="Two loaves", cost_points=30)

    anonymous = generated.Client(base_url=base_url, raise_on_unexpected_status=True)
    email = f"journey-{uuid.uuid4().hex[:8]}@example.org"
    sent = api("auth.request_login_code").sync_detailed(
        client=anonymous, body=models.OtpRequest(email=email))
    assert sent.status_code == 202
    tokens = _typed(api("auth.exchange_login_code").sync(
        client=anonymous, body=models.TokenRequest(email=email, code=otp_from_mail(app, email))))
    assert isinstance(tokens, models.Tokens)
    assert tokens.role == models.TokensRole.MEMBER
    resident = generated.AuthenticatedClient(base_url=base_url, token=tokens.access_token,
                                             raise_on_unexpected_status=True)
    me = _typed(api("me.get_profile").sync(client=resident))
    give_points(app, str(me.id), 100)

    balance = _typed(api("me.get_balance").sync(client=resident))
    assert (balance.available, balance.pending) == (100, 0)
    offers = api("offers.list_offers").sync(client=resident)
    (listed,) = [item for item in offers if str(item.id) == offer["id"]]
    _typed(listed)
    assert listed.partner.name == "Kirkgate Bakery"

    poor_claim = api("me.claim_offer").sync_detailed(
        client=resident, body=models.ClaimIn(offer_id=uuid.UUID(int=1)))
    assert poor_claim.status_code == 404
    assert _typed(poor_claim.parsed).reason == models.ErrorReason.NOT_FOUND

    reward = _typed(api("me.claim_offer").sync(
        client=resident, body=models.ClaimIn(offer_id=listed.id), idempotency_key="journey-1"))
    assert isinstance(reward, models.Reward)
    voucher = _typed(api("me.get_my_reward").sync(reward_id=reward.id, client=resident))
    assert voucher.status == models.RewardStatus.ISSUED
    assert isinstance(voucher.partner, models.PartnerBrief)
    assert isinstance(voucher.expires_at, datetime.datetime)
    assert voucher.code
    qr = api("me.get_voucher_qr_code").sync_detailed(reward_id=reward.id, client=resident)
    assert qr.status_code == 200 and qr.content.startswith(b"<?xml")
    lines = api("me.list_ledger_lines").sync_detailed(client=resident, page_size=1)
    assert [_typed(line).kind for line in lines.parsed][0] == models.LedgerLineKind.HOLD
    assert lines.headers["X-Next-Cursor"]

    till = generated.AuthenticatedClient(base_url=base_url, token=partner["api_key"],
                                         auth_header_name="X-Api-Key", prefix="",
                                         raise_on_unexpected_status=True)
    checked = _typed(api("partner.check_voucher").sync(code=voucher.code, client=till))
    assert checked.valid is True and checked.status == models.VoucherStatus.ISSUED
    redeemed = _typed(api("partner.redeem_voucher").sync(
        client=till, body=models.RedemptionIn(code=voucher.code)))
    assert redeemed.channel == models.RedemptionOutChannel.CODE
    assert redeemed.offer.title == "Two loaves"
    again = api("partner.redeem_voucher").sync_detailed(
        client=till, body=models.RedemptionIn(code=voucher.code))
    assert again.status_code == 409
    assert _typed(again.parsed).reason == models.ErrorReason.VOUCHER_USED
    after = _typed(api("partner.check_voucher").sync(code=voucher.code, client=till))
    assert after.valid is False and after.status == models.VoucherStatus.REDEEMED

"""createWechatPayOrder for the official account's H5 pages: the order is placed for the app its payer
logged in through (input.app, or the user's app by default), payParams name that app and verify, and
every notify, query and refund of the order must name it too; a notify naming the merchant's other app
is recorded as a mismatch, never applied."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from typing import Any

import pytest
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature import pkcs1_15
from django.conf import settings
from django.utils import timezone
from graphql_jwt.shortcuts import get_token

from accounts.models import User, WechatIdentity
from config import providers
from payments import gateways, services
from payments.models import Order, PaymentEvent, Refund
from providers.sandbox.wechatpay import encrypt_refund_info
from providers.wechatpay import v2
from tests.factories import OrderFactory, UserFactory, WechatIdentityFactory
from tests.helpers import CREATE_ORDER, GraphQLClient, create_order_input, error_code
from tests.payments.notify_bodies import (
    captured_refund_notify,
    is_success,
    post_notify,
    reencrypt_v3,
    resign_v2,
    sign_v3,
    state,
    v2_return_code,
    v3_resource,
)

ORDER = "query O($n: String!) { order(outTradeNo: $n) { status transactionId refundedAmount } }"
SYNC = "mutation S($n: String!) { syncOrder(outTradeNo: $n) { status refundedAmount } }"
REFUND = (
    'mutation R($n: String!, $a: Int!) { refundOrder(outTradeNo: $n, amount: $a, reason: "h5") { outRefundNo status } }'
)
VERSIONS = ["V2", "V3"]


def identity(user: User, app: str) -> WechatIdentity:
    if app == "OFFICIAL_ACCOUNT":
        kind, appid = WechatIdentity.Kind.OFFICIAL_ACCOUNT, settings.WECHAT_OA_APPID
    else:
        kind, appid = WechatIdentity.Kind.MINIPROGRAM, settings.WECHAT_MINIPROGRAM_APPID
    return WechatIdentityFactory(user=user, kind=kind, appid=appid, openid=f"o-{app.lower()}-{user.username}")


@pytest.fixture
def h5_user(db: Any) -> User:
    """A user who logged in through the official account only (web OAuth), never in the mini-program."""
    user = UserFactory(username="h5")
    identity(user, "OFFICIAL_ACCOUNT")
    return user


def create(gql: GraphQLClient, version: str, **extra: Any) -> dict[str, Any]:
    result = gql(CREATE_ORDER, create_order_input(version=version, **extra))
    assert "errors" not in result, result
    return result["data"]["createWechatPayOrder"]  # type: ignore[no-any-return]


def assert_pay_sign_verifies(params: dict[str, str], version: str) -> None:
    """Checked as WeChat checks it, with nothing of ours: v3 RSA-SHA256 over appId, timeStamp, nonceStr and
    package lines with the merchant's key; v2 MD5 or HMAC-SHA256 over the sorted fields and the API key."""
    if version == "V3":
        assert params["signType"] == "RSA"
        message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
        merchant = RSA.import_key(providers.wechatpay_config().private_key_pem).public_key()
        pkcs1_15.new(merchant).verify(SHA256.new(message.encode()), base64.b64decode(params["paySign"]))
        return
    signed = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "paySign")
    key = settings.WECHATPAY_API_KEY
    if params["signType"] == "MD5":
        expected = hashlib.md5(f"{signed}&key={key}".encode(), usedforsecurity=False).hexdigest()  # noqa: S324
    else:
        assert params["signType"] == "HMAC-SHA256"
        expected = hmac.new(key.encode(), f"{signed}&key={key}".encode(), hashlib.sha256).hexdigest()
    assert params["paySign"] == expected.upper()


def notify_appid(version: str, body: bytes) -> str:
    return v2.parse_xml(body)["appid"] if version == "V2" else str(v3_resource(body)["appid"])


# --- the H5 flow: create, pay at the sandbox cashier, notify, sync, refund ---------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_an_official_account_user_pays_a_jsapi_order_named_for_the_account(
    gql, products, wechatpay_sandbox, h5_user, staff, version
):
    gql.token = get_token(h5_user)
    created = create(gql, version)  # no app given: the user's, the official account
    number = created["order"]["outTradeNo"]
    params = created["payParams"]
    assert params["appId"] == settings.WECHAT_OA_APPID != settings.WECHATPAY_APPID
    assert params["package"].startswith("prepay_id=")
    assert_pay_sign_verifies(params, version)
    order = Order.objects.get(out_trade_no=number)
    assert (order.appid, order.payer_openid) == (settings.WECHAT_OA_APPID, "o-official_account-h5")
    at_sandbox = wechatpay_sandbox.order(number)
    assert (at_sandbox["appid"], at_sandbox["payer_openid"]) == (settings.WECHAT_OA_APPID, "o-official_account-h5")

    # The cashier pays; the notify names the account's appid and is applied.
    wechatpay_sandbox.pay(number)
    url, headers, body = wechatpay_sandbox.pay_notify(number)
    assert notify_appid(version, body) == settings.WECHAT_OA_APPID
    assert is_success(version, post_notify(url, headers, body))
    paid = gql(ORDER, {"n": number})["data"]["order"]
    assert paid["status"] == "PAID" and paid["transactionId"]
    # syncOrder asks WeChat Pay (v2: naming the account's appid) and finds it paid, as applied.
    assert gql(SYNC, {"n": number})["data"]["syncOrder"]["status"] == "PAID"

    # A refund whose notify is lost is found by syncOrder (v2: a refund query naming the account's appid).
    buyer_token, gql.token = gql.token, get_token(staff)
    first = gql(REFUND, {"n": number, "a": 800})["data"]["refundOrder"]
    assert first["status"] == "PROCESSING"
    deliver = wechatpay_sandbox.deliver
    lost = captured_refund_notify(wechatpay_sandbox, first["outRefundNo"])
    wechatpay_sandbox.deliver = deliver
    gql.token = buyer_token
    assert gql(SYNC, {"n": number})["data"]["syncOrder"] == {"status": "PAID", "refundedAmount": 800}
    assert is_success(version, post_notify(*lost))  # arriving late: a duplicate, acknowledged
    # The rest, with its notify delivered.
    gql.token = get_token(staff)
    rest = gql(REFUND, {"n": number, "a": 1000})["data"]["refundOrder"]
    assert wechatpay_sandbox.complete_refund(rest["outRefundNo"])[0] in (200, 204)
    gql.token = buyer_token
    assert gql(ORDER, {"n": number})["data"]["order"]["status"] == "REFUNDED"
    assert set(Refund.objects.values_list("status", flat=True)) == {"SUCCESS"}
    assert not Order.objects.get(pk=order.pk).needs_attention
    assert not PaymentEvent.objects.filter(outcome="MISMATCH").exists()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_miniprogram_order_of_the_same_user_names_the_miniprogram(gql, products, wechatpay_sandbox, h5_user, version):
    identity(h5_user, "MINIPROGRAM")
    gql.token = get_token(h5_user)
    default = create(gql, version)
    chosen = create(gql, version, app="OFFICIAL_ACCOUNT")
    assert default["payParams"]["appId"] == settings.WECHATPAY_APPID
    assert chosen["payParams"]["appId"] == settings.WECHAT_OA_APPID
    # Two orders, one per app (a retry for the other app is not the same order).
    assert default["order"]["outTradeNo"] != chosen["order"]["outTradeNo"]
    assert_pay_sign_verifies(default["payParams"], version)
    assert_pay_sign_verifies(chosen["payParams"], version)


# --- which app: the default, and what is refused -------------------------------------------------------


@pytest.mark.parametrize(
    ("identities", "app", "expected"),
    [
        ((), None, "MINIPROGRAM"),  # no WeChat identity (a NATIVE payer): the merchant's default app
        (("MINIPROGRAM",), None, "MINIPROGRAM"),
        (("OFFICIAL_ACCOUNT",), None, "OFFICIAL_ACCOUNT"),
        (("MINIPROGRAM", "OFFICIAL_ACCOUNT"), None, "MINIPROGRAM"),  # the mini-program login the later
        # Both, the last login through the official account (an H5 page): its app.
        (("MINIPROGRAM", "OFFICIAL_ACCOUNT:last"), None, "OFFICIAL_ACCOUNT"),
        (("OFFICIAL_ACCOUNT", "MINIPROGRAM:last"), None, "MINIPROGRAM"),
        (("MINIPROGRAM", "OFFICIAL_ACCOUNT"), "OFFICIAL_ACCOUNT", "OFFICIAL_ACCOUNT"),
        (("OFFICIAL_ACCOUNT",), "MINIPROGRAM", "MINIPROGRAM"),
    ],
)
def test_the_app_an_order_is_placed_for(products, wechatpay_sandbox, identities, app, expected):
    user = UserFactory(username="payer")
    for number, each in enumerate(identities):
        app_name, _, last = each.partition(":")
        made = identity(user, app_name)
        # What each login sets: the later one is the app of the user's latest login.
        made.last_login_at = timezone.now() - dt.timedelta(minutes=10 if not last else 0, seconds=number)
        made.save(update_fields=["last_login_at"])
    identities = tuple(each.partition(":")[0] for each in identities)
    payment = services.create_wechatpay_order(
        user=user, sku="coffee", quantity=1, trade_type="NATIVE", api_version="V2", client_ip="127.0.0.1", app=app
    )
    appid = settings.WECHAT_OA_APPID if expected == "OFFICIAL_ACCOUNT" else settings.WECHATPAY_APPID
    assert payment.order.appid == appid == wechatpay_sandbox.order(payment.order.out_trade_no)["appid"]
    assert payment.order.payer_openid == (f"o-{expected.lower()}-payer" if expected in identities else "")


def test_official_account_jsapi_without_an_openid_there_is_bad_user_input(gql, products, wechatpay_sandbox):
    user = UserFactory(username="mini")
    identity(user, "MINIPROGRAM")
    gql.token = get_token(user)
    result = gql(CREATE_ORDER, create_order_input(app="OFFICIAL_ACCOUNT"))
    assert error_code(result) == "BAD_USER_INPUT"
    assert "officialAccountLogin" in result["errors"][0]["message"]
    assert Order.objects.count() == 0 and wechatpay_sandbox.orders_created() == 0


def test_official_account_not_configured(gql, products, wechatpay_sandbox, h5_user, settings):
    settings.WECHAT_OA_SECRET = ""
    providers.reset()
    # The merchant then serves the mini-program only; the sandbox merchant accepts only its appid.
    assert providers.wechatpay_config().appids == (settings.WECHATPAY_APPID,)
    gql.token = get_token(h5_user)
    refused = gql(CREATE_ORDER, create_order_input(app="OFFICIAL_ACCOUNT", tradeType="NATIVE"))
    assert error_code(refused) == "BAD_USER_INPUT" and "not configured" in refused["errors"][0]["message"]
    # By default the user's official-account identity no longer counts: JSAPI needs a mini-program login.
    assert error_code(gql(CREATE_ORDER, create_order_input())) == "BAD_USER_INPUT"
    assert Order.objects.count() == 0


def test_app_payments_name_the_merchants_app(gql, products, wechatpay_sandbox, h5_user):
    gql.token = get_token(h5_user)
    app = create(gql, "V3", tradeType="APP")  # an official-account user by default, yet an APP order
    assert app["appParams"]["appid"] == settings.WECHATPAY_APPID
    assert Order.objects.get().appid == settings.WECHATPAY_APPID
    assert error_code(gql(CREATE_ORDER, create_order_input(tradeType="APP", app="OFFICIAL_ACCOUNT"))) == (
        "BAD_USER_INPUT"
    )


def test_the_merchant_config_lists_the_apps_bound_to_it(db):
    config = providers.wechatpay_config()
    assert config.appids == (settings.WECHATPAY_APPID, settings.WECHAT_OA_APPID)
    assert config.binds(settings.WECHAT_OA_APPID) and not config.binds("wx0000000000000bad")
    merchant = providers.sandbox().providers["wechatpay"].m
    assert merchant.binds(settings.WECHAT_OA_APPID) and not merchant.binds("wx0000000000000bad")


@pytest.mark.parametrize("version", VERSIONS)
def test_an_order_older_than_its_appid_is_the_merchants_default_apps(products, buyer, wechatpay_sandbox, version):
    older = OrderFactory(appid="", api_version=version)
    assert gateways.identity(older) == (settings.WECHATPAY_APPID, settings.WECHATPAY_MCH_ID)
    payment = services.create_wechatpay_order(
        user=buyer, sku="coffee", quantity=1, trade_type="NATIVE", api_version=version, client_ip="127.0.0.1"
    )
    Order.objects.filter(pk=payment.order.pk).update(appid="")
    wechatpay_sandbox.pay(payment.order.out_trade_no)
    assert services.sync_order(user=buyer, out_trade_no=payment.order.out_trade_no).status == "PAID"


# --- a result naming the merchant's other app ----------------------------------------------------------


def _place(user: User, app: str, version: str) -> Order:
    return services.create_wechatpay_order(
        user=user, sku="coffee", quantity=1, trade_type="JSAPI", api_version=version, client_ip="127.0.0.1", app=app
    ).order


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("app", "other"), [("OFFICIAL_ACCOUNT", "WECHATPAY_APPID"), ("MINIPROGRAM", "WECHAT_OA_APPID")]
)
def test_a_pay_notify_naming_the_merchants_other_app_is_a_mismatch(
    products, wechatpay_sandbox, h5_user, django_capture_on_commit_callbacks, version, app, other
):
    identity(h5_user, "MINIPROGRAM")
    order = _place(h5_user, app, version)
    wechatpay_sandbox.pay(order.out_trade_no)
    url, headers, body = wechatpay_sandbox.pay_notify(order.out_trade_no)
    other_appid = getattr(settings, other)
    # Signed with our keys and naming our merchant: genuine but for the other app, so not this order's payment.
    if version == "V2":
        forged_headers, forged = headers, resign_v2(body, order.sign_type, lambda p: p.update(appid=other_appid))
    else:
        forged = reencrypt_v3(body, lambda d: d.update(appid=other_appid))
        forged_headers = sign_v3(headers, forged)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_notify(url, forged_headers, forged)
    if version == "V2":
        assert v2_return_code(response) == "FAIL"
    else:
        assert response.status_code == 400 and response.json()["code"] == "FAIL"
    assert state(order) == ("PENDING", None, None, 0, 1)
    flagged = Order.objects.get(pk=order.pk)
    assert flagged.needs_attention and repr(other_appid) in flagged.attention_reason
    assert list(PaymentEvent.objects.values_list("outcome", flat=True)) == ["MISMATCH"]
    # The genuine notify, naming the order's own app, pays it.
    assert is_success(version, post_notify(url, headers, body))
    assert Order.objects.get(pk=order.pk).status == "PAID"


def test_a_v2_refund_notify_naming_the_merchants_other_app_is_a_mismatch(products, wechatpay_sandbox, h5_user, staff):
    order = _place(h5_user, "OFFICIAL_ACCOUNT", "V2")
    wechatpay_sandbox.pay(order.out_trade_no)
    assert is_success("V2", post_notify(*wechatpay_sandbox.pay_notify(order.out_trade_no)))
    refund = services.refund_order(staff=staff, out_trade_no=order.out_trade_no, amount=800, reason="")
    url, headers, body = captured_refund_notify(wechatpay_sandbox, refund.out_refund_no)
    params = v2.parse_xml(body)
    assert params["appid"] == settings.WECHAT_OA_APPID
    # A v2 refund notify is authenticated by its req_info alone: the appid beside it is matched with the order.
    info = v2.decrypt_refund_info(params["req_info"], settings.WECHATPAY_API_KEY)
    forged = v2.to_xml(
        {
            **params,
            "appid": settings.WECHATPAY_APPID,
            "req_info": encrypt_refund_info(info, settings.WECHATPAY_API_KEY),
        }
    )

    assert v2_return_code(post_notify(url, headers, forged)) == "FAIL"
    assert Refund.objects.get(pk=refund.pk).status == "PROCESSING"
    assert Order.objects.get(pk=order.pk).needs_attention
    assert PaymentEvent.objects.filter(order=order, outcome="MISMATCH").count() == 1
    assert is_success("V2", post_notify(url, headers, body))
    assert Refund.objects.get(pk=refund.pk).status == "SUCCESS"

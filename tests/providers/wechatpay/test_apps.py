"""One merchant, several apps: the v2 and v3 clients against the sandbox in-process name the app a call is
for (the mini-program by default, or the official account), refuse an app not bound to the merchant before
any request, and a v2 answer must name the app its request named."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from django.conf import settings

from config import providers
from providers.http import ProviderError, ProviderUnavailable
from providers.wechatpay.types import WechatPayConfig
from providers.wechatpay.v2_client import WechatPayV2Client
from providers.wechatpay.v3_client import WechatPayV3Client

UNBOUND = "wx0000000000000bad"


def _client(version: str) -> WechatPayV2Client | WechatPayV3Client:
    return providers.wechatpay(version)


def _sandbox() -> Any:
    return providers.sandbox().providers["wechatpay"]


def _create(client: WechatPayV2Client | WechatPayV3Client, number: str, appid: str = "") -> str:
    prepay = client.create(
        trade_type="JSAPI",
        out_trade_no=number,
        description="Coffee",
        amount=1800,
        notify_url=f"{settings.PUBLIC_BASE_URL}/notify/wechatpay/{client.version.lower()}/",
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30),
        payer_openid="o-h5",
        appid=appid,
    )
    return prepay.prepay_id


def test_binds_its_default_app_and_the_listed_ones():
    config = WechatPayConfig(appid="wxmini", mchid="1900000109", appids=("wxmini", "wxoa"))
    assert config.binds("wxmini") and config.binds("wxoa")
    assert not config.binds(UNBOUND) and not config.binds("")
    assert WechatPayConfig(appid="wxmini", mchid="1900000109").binds("wxmini")
    assert "wxoa" in repr(config)


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_an_order_and_its_pay_params_name_the_app_given(version):
    client = _client(version)
    prepay_id = _create(client, f"T-oa-{version}", appid=settings.WECHAT_OA_APPID)
    assert _sandbox().order(f"T-oa-{version}")["appid"] == settings.WECHAT_OA_APPID
    assert client.jsapi_params(prepay_id, appid=settings.WECHAT_OA_APPID)["appId"] == settings.WECHAT_OA_APPID
    assert client.jsapi_params(prepay_id)["appId"] == settings.WECHATPAY_APPID  # the default
    # APP payments keep the merchant's app.
    assert client.app_params(prepay_id)["appid"] == settings.WECHATPAY_APPID


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_an_app_not_bound_to_the_merchant_is_refused_before_any_request(version):
    client = _client(version)
    with pytest.raises(ProviderError) as refused:
        _create(client, f"T-unbound-{version}", appid=UNBOUND)
    assert refused.value.errcode == "NOT_CONFIGURED"
    with pytest.raises(ProviderError):
        client.jsapi_params("wx201410272009395522657a690389285100", appid=UNBOUND)
    assert _sandbox().orders_created() == 0


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_the_sandbox_merchant_refuses_an_app_not_bound_to_it(version):
    client = _client(version)
    config: WechatPayConfig = client.config
    client.config = dataclasses.replace(config, appids=(*config.appids, UNBOUND))  # bound here, not there
    with pytest.raises(ProviderError) as refused:
        _create(client, f"T-theirs-{version}", appid=UNBOUND)
    assert refused.value.errcode in ("FAIL", "PARAM_ERROR")
    assert _sandbox().orders_created() == 0


def test_a_v2_answer_must_name_the_app_the_request_named():
    client = _client("V2")
    assert isinstance(client, WechatPayV2Client)
    _create(client, "T-oa-query", appid=settings.WECHAT_OA_APPID)
    trade = client.query("T-oa-query", appid=settings.WECHAT_OA_APPID)
    assert (trade.appid, trade.state) == (settings.WECHAT_OA_APPID, "NOTPAY")
    # Asked as the mini-program, WeChat Pay answers about the order: its app, not the one asked for.
    with pytest.raises(ProviderUnavailable, match="another appid"):
        client.query("T-oa-query")
    client.close("T-oa-query", appid=settings.WECHAT_OA_APPID)
    assert _sandbox().order("T-oa-query")["state"] == "CLOSED"


def test_a_v3_query_reports_the_orders_app():
    client = _client("V3")
    assert isinstance(client, WechatPayV3Client)
    _create(client, "T-oa-v3-query", appid=settings.WECHAT_OA_APPID)
    assert client.query("T-oa-v3-query").appid == settings.WECHAT_OA_APPID

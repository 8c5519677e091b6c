"""What the WeChat Pay clients (v2 and v3) share: config, results, and the notify error."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

PROVIDER = "wechatpay"
BASE_URL = "https://api.mch.weixin.qq.com"
CHINA = dt.timezone(dt.timedelta(hours=8))

TradeType = Literal["JSAPI", "NATIVE", "H5", "APP"]


class InvalidNotify(ValueError):
    """A notify that must change nothing: unverifiable, malformed or not ours."""


@dataclass(frozen=True)
class WechatPayConfig:
    appid: str
    mchid: str
    api_key: str = ""  # v2
    api_v3_key: str = ""  # v3
    private_key_pem: str = ""  # merchant key: v3 requests and v3 pay params
    cert_serial_no: str = ""  # serial of the merchant certificate
    # key id (PUB_KEY_ID_... or platform certificate serial) -> public key PEM
    platform_keys: dict[str, str] = field(default_factory=dict)
    client_cert: str | None = None  # v2 refunds: paths of the merchant API certificate and key
    client_key: str | None = None
    base_url: str = BASE_URL

    def __repr__(self) -> str:  # keys never reach a log line
        return f"WechatPayConfig(appid={self.appid!r}, mchid={self.mchid!r}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class Prepay:
    prepay_id: str = ""
    code_url: str = ""
    h5_url: str = ""


@dataclass(frozen=True)
class Trade:
    """A payment as the provider reports it (query answer or pay notify)."""

    out_trade_no: str
    state: str  # SUCCESS, NOTPAY, CLOSED, REFUND, USERPAYING, PAYERROR, REVOKED
    appid: str
    mchid: str
    amount: int | None = None
    transaction_id: str = ""
    payer_openid: str = ""
    success_time: dt.datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RefundState:
    out_trade_no: str
    out_refund_no: str
    status: str  # PROCESSING, SUCCESS, CLOSED, ABNORMAL
    refund_id: str = ""
    amount: int | None = None  # the refund, fen
    total: int | None = None  # the order, fen
    appid: str = ""
    mchid: str = ""
    success_time: dt.datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Notify:
    """A verified notify: exactly one of trade / refund is set."""

    event_id: str
    trade: Trade | None = None
    refund: RefundState | None = None

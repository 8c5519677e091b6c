"""What the WeChat Pay clients (v2 and v3) share: config, results, and the notify error."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

# Re-exported: the WeChat Pay clients report in the providers' common shapes.
from providers.trades import InvalidNotify, Notify, RefundState, Trade

__all__ = ["CHINA", "PROVIDER", "InvalidNotify", "Notify", "Prepay", "RefundState", "Trade", "WechatPayConfig"]

PROVIDER = "wechatpay"
BASE_URL = "https://api.mch.weixin.qq.com"
CHINA = dt.timezone(dt.timedelta(hours=8))

TradeType = Literal["JSAPI", "NATIVE", "H5", "APP"]


@dataclass(frozen=True)
class WechatPayConfig:
    appid: str  # the merchant's default app: calls that name no appid use it
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
    # Every appid bound to the merchant (a mini-program, an official account...): an order names the app
    # its payer's openid belongs to. `appid` is bound whether listed or not.
    appids: tuple[str, ...] = ()

    def binds(self, appid: str) -> bool:
        """Whether `appid` is bound to this merchant (so its orders, answers and notifies are ours)."""
        return bool(appid) and (appid == self.appid or appid in self.appids)

    def __repr__(self) -> str:  # keys never reach a log line
        return (
            f"WechatPayConfig(appid={self.appid!r}, mchid={self.mchid!r}, appids={self.appids!r}, "
            f"base_url={self.base_url!r})"
        )


@dataclass(frozen=True)
class Prepay:
    prepay_id: str = ""
    code_url: str = ""
    h5_url: str = ""

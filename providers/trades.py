"""What every payment provider's client reports, in one shape: payments.services applies it the same
way whichever provider sent it (a notify, a query, a refund answer)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


class InvalidNotify(ValueError):
    """A notify that must change nothing: unverifiable, malformed or not ours."""


@dataclass(frozen=True)
class Trade:
    """A payment as the provider reports it (query answer or pay notify)."""

    out_trade_no: str
    # SUCCESS, NOTPAY, CLOSED, REFUND, USERPAYING, PAYERROR, REVOKED (WeChat Pay's words; other
    # providers' clients map theirs onto them)
    state: str
    appid: str  # the app the payment was made for (Alipay: app_id)
    mchid: str  # the merchant paid (Alipay: seller_id)
    amount: int | None = None
    transaction_id: str = ""  # the provider's number of the payment (Alipay: trade_no)
    payer_openid: str = ""  # the payer at the provider (Alipay: buyer_id / buyer_open_id)
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

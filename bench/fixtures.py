"""Data of the notify and orders scenarios of bench/run.sh: orders, signed notifies, SQL counts, checks.

Run by run.sh with exactly the gunicorn workers' environment (the same DATABASE_URL, REDIS_URL,
CACHE_KEY_PREFIX, SECRET_KEY, JWT_SECRET_KEY, SANDBOX=1), so it sees the same database and the
same sandbox keys (shared through the cache keys "sbx:wxp:keys" and "sbx:alipay:keys", see
config/providers.py):

    fixtures.py setup WORK RUN_ID ORDERS_USER_ID TOKEN "PHASES" V2_PER_SECOND V3_PER_SECOND ALIPAY_PER_SECOND
                      OA_PER_SECOND
        PHASES is "warmup:5 r1:10 r2:10 ..." (phase:seconds). Creates the products, 60 orders of
        the `orders` user (whose TOKEN it is), and per phase ceil(rate x seconds) PENDING orders
        of a notify-only user for each kind with a rate > 0 (out_trade_no B2<run><phase><n>,
        B3<run><phase><n> and BA<run><phase><n>, Alipay PAGE orders); writes WORK/notify_v2-PHASE.lines
        (one notify a line: out_trade_no TAB the signed XML body, built as providers/sandbox/wechatpay.py
        WechatPaySimulator.pay_notify builds it), WORK/notify_alipay-PHASE.lines (out_trade_no TAB the
        RSA2-signed form body Alipay posts) and WORK/notify_v3-PHASE.orders (what `sign` needs); the
        official account's keyword replies and, per phase, ceil(OA rate x seconds) safe-mode text messages
        of followers, each with a fresh MsgId, counted (WORK/oa_text-PHASE.plan, built by `messages`). Then
        measures the SQL statements of one request of each scenario (`me`, a first login, the `orders`
        page, a v2, a v3 and an Alipay notify, a text message; Django's test client through the whole
        stack, CaptureQueriesContext) and writes them to WORK/sql.txt (+ WORK/sql-*.log).
    fixtures.py sign WORK PHASE [COUNT]
        Builds and signs the v3 TRANSACTION.SUCCESS notifies of PHASE now (Wechatpay-Timestamp is
        checked against the server's clock, +-5 min): WORK/notify_v3-PHASE.lines, one notify a
        line: out_trade_no TAB timestamp TAB nonce TAB signature TAB serial TAB body. COUNT: only
        the first COUNT.
    fixtures.py messages WORK PHASE
        Builds, encrypts and signs the oa_text messages of PHASE now (the server refuses a `timestamp`
        more than 5 minutes off): WORK/oa_text-PHASE.lines and .keys (bench/oa_text.py).
    fixtures.py verify WORK "PHASES" "MODES" RUN_ID
        After the run, per notify scenario: the PAID orders and their payment events against the
        answers wrk read (WORK/PHASE-MODE.txt.ids: which out_trade_no got a good answer, a bad one,
        or none before wrk stopped). Every well-answered order must be PAID, no badly answered or
        unsent one may be, and PAID ones without an answer must be among those in flight when wrk
        stopped. Prints key=value lines for report.py; exit status 1 when they disagree.
    fixtures.py replies WORK PHASE
        Right after an oa_text phase (the server keeps a reply 300 s): every text message answered with
        an encrypted reply has its rendered reply kept under its deduplication key, and no message never
        sent has a key (bench/oa_text.py check). Prints one VERIFY line; exit status 1 when they disagree.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import User  # noqa: E402
from bench import oa_text  # noqa: E402
from config import providers  # noqa: E402
from payments.models import Order, PaymentEvent, Product  # noqa: E402
from providers.alipay.client import yuan  # noqa: E402
from providers.alipay.signing import sign_content  # noqa: E402
from providers.rsa import sign_sha256  # noqa: E402
from providers.sandbox.wechatpay import v3_notify_body as sandbox_v3_notify_body  # noqa: E402
from providers.wechatpay import v2  # noqa: E402
from providers.wechatpay.types import CHINA  # noqa: E402

ORDERS_QUERY = "{ orders(first: 50) { edges { node { outTradeNo status amount product { sku } } } } }"
ME_QUERY = "{ me { id openid nickname } }"
LOGIN_QUERY = "mutation Login($code: String!) { wechatLogin(code: $code) { token refreshToken created user { id } } }"
V2_OK = b"<return_code><![CDATA[SUCCESS]]></return_code>"
ALIPAY_OK = b"success"  # the whole body: anything else makes Alipay retry
ALIPAY_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
PRICE = 990
ORDERS_OF_USER = 60
PHASE_TAGS = {"warmup": "w00", "probe": "q00"}
# The kind of notify orders -> the letter after "B" in their out_trade_no; the scenario of each kind.
KIND_LETTERS = {"V2": "2", "V3": "3", "ALIPAY": "A"}
SCENARIO_KINDS = {"notify_v2": "V2", "notify_v3": "V3", "notify_alipay": "ALIPAY"}


def _tag(phase: str) -> str:
    """Three characters, so no phase's numbers are a prefix of another's: w00, q00, r01, r02, ..."""
    return PHASE_TAGS.get(phase) or f"r{int(phase[1:]):02d}"


def out_trade_no(kind: str, run: str, phase: str, n: int) -> str:
    return f"B{KIND_LETTERS[kind]}{run}{_tag(phase)}{n:06d}"  # e.g. B2a1b2c3d4r01000042: <= 32 characters


def _phases(text: str) -> list[tuple[str, float]]:
    out = []
    for part in text.split():
        name, _, seconds = part.partition(":")
        out.append((name, float(seconds or 0)))
    return out


def _now_china() -> dt.datetime:
    return dt.datetime.now(CHINA).replace(microsecond=0)


# --- notifies, built as the sandbox builds them (providers/sandbox/wechatpay.py) -------------------


def _transaction_id(order_no: str) -> str:
    # The simulator's form is "4200" + date + 14 random hex; here unique by construction, not by chance.
    return "4200" + _now_china().strftime("%Y%m%d") + order_no


def v2_notify(order_no: str, amount: int, sign_type: str) -> bytes:
    """WechatPaySimulator.pay_notify for a paid V2 JSAPI order: flat XML signed with the API key."""
    params = {
        "return_code": "SUCCESS",
        "result_code": "SUCCESS",
        "appid": settings.WECHATPAY_APPID,
        "mch_id": settings.WECHATPAY_MCH_ID,
        "nonce_str": v2.nonce(),
        "bank_type": "OTHERS",
        "is_subscribe": "N",
        "out_trade_no": order_no,
        "total_fee": amount,
        "trade_type": "JSAPI",
        "openid": "o-sandbox-payer",
        "fee_type": "CNY",
        "cash_fee": amount,
        "transaction_id": _transaction_id(order_no),
        "time_end": _now_china().strftime("%Y%m%d%H%M%S"),
    }
    params["sign"] = v2.sign(params, settings.WECHATPAY_API_KEY, sign_type)
    return v2.to_xml(params)


def v3_notify_body(order_no: str, amount: int) -> str:
    """The JSON body of WechatPaySimulator.pay_notify for a paid V3 JSAPI order (resource AES-GCM)."""
    resource = {
        "appid": settings.WECHATPAY_APPID,
        "mchid": settings.WECHATPAY_MCH_ID,
        "out_trade_no": order_no,
        "trade_state": "SUCCESS",
        "trade_state_desc": "SUCCESS",
        "trade_type": "JSAPI",
        "amount": {"total": amount, "currency": "CNY", "payer_total": amount, "payer_currency": "CNY"},
        "transaction_id": _transaction_id(order_no),
        "success_time": _now_china().isoformat(),
        "payer": {"openid": "o-sandbox-payer"},
        "bank_type": "OTHERS",
    }
    return sandbox_v3_notify_body(settings.WECHATPAY_API_V3_KEY, "TRANSACTION.SUCCESS", "transaction", resource)


_SIGNER = None


def _signer_init(pem: str) -> None:
    global _SIGNER
    from Crypto.PublicKey import RSA
    from Crypto.Signature import pkcs1_15

    # v3.sign_message imports the key on every call (~12 ms); imported once it is ~0.8 ms a signature.
    _SIGNER = pkcs1_15.new(RSA.import_key(pem))


def _v3_line(item: tuple[str, int]) -> str:
    """out_trade_no TAB timestamp TAB nonce TAB signature TAB serial TAB body (as v3_signed_headers signs)."""
    import base64

    from Crypto.Hash import SHA256

    order_no, amount = item
    body = v3_notify_body(order_no, amount)
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    assert _SIGNER is not None
    signature = base64.b64encode(_SIGNER.sign(SHA256.new(f"{timestamp}\n{nonce}\n{body}\n".encode()))).decode()
    return "\t".join((order_no, timestamp, nonce, signature, settings.WECHATPAY_PUBLIC_KEY_ID, body))


def _platform_key() -> str:
    return providers._wechatpay_sandbox_keys()[1]


def v3_headers(line: str) -> tuple[dict[str, str], bytes]:
    _, timestamp, nonce, signature, serial, body = line.split("\t", 5)
    headers = {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signature,
        "Wechatpay-Serial": serial,
        "Content-Type": "application/json",
    }
    return headers, body.encode("utf-8")


# --- Alipay notifies: the form fields Alipay posts, as tests/payments/alipay_bodies.py makes them -------

_ALIPAY_KEY = ""


def _alipay_key() -> str:
    """The private key the sandbox signs as Alipay with; the workers verify with its public half."""
    return providers.alipay_sandbox_keys()[1]


def _alipay_signer_init(pem: str) -> None:
    global _ALIPAY_KEY
    _ALIPAY_KEY = pem


def _wire_now() -> str:
    return _now_china().strftime("%Y-%m-%d %H:%M:%S")


def alipay_notify(item: tuple[str, int, str]) -> bytes:
    """Alipay's asynchronous notify that a PAGE order was paid (TRADE_SUCCESS), RSA2-signed over every
    other non-empty field but sign_type, URL-encoded as Alipay posts it."""
    order_no, amount, subject = item
    now = _wire_now()
    form = {
        "notify_time": now,
        "notify_type": "trade_status_sync",
        "notify_id": secrets.token_hex(16),
        "app_id": settings.ALIPAY_APPID,
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        # Alipay's form is date + "22001" + digits; here unique by construction (event key and column).
        "trade_no": _now_china().strftime("%Y%m%d") + "22001" + order_no,
        "out_trade_no": order_no,
        "buyer_id": "2088102177846880",
        "seller_id": settings.ALIPAY_SELLER_ID,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": yuan(amount),
        "receipt_amount": yuan(amount),
        "subject": subject,
        "gmt_create": now,
        "gmt_payment": now,
    }
    form["sign"] = sign_sha256(_ALIPAY_KEY or _alipay_key(), sign_content(form, for_verification=True))
    return urlencode(form, quote_via=quote).encode("ascii")


def alipay_notifies(items: list[tuple[str, int, str]]) -> list[bytes]:
    """The notifies of `items` (out_trade_no, fen, subject); RSA signing (~0.8 ms each) in a pool when many."""
    pem = _alipay_key()
    workers = min(os.cpu_count() or 1, 4)
    if len(items) >= 1000 and workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers, _alipay_signer_init, (pem,)) as pool:
            return pool.map(alipay_notify, items, chunksize=256)
    _alipay_signer_init(pem)
    return [alipay_notify(item) for item in items]


# --- setup --------------------------------------------------------------------------------------


def _order_fields(kind: str) -> dict[str, str]:
    """What the server stores for an order of this kind: a WeChat Pay JSAPI order of API version V2
    or V3, or an Alipay PAGE order."""
    if kind == "ALIPAY":
        return {
            "provider": Order.Provider.ALIPAY,
            "api_version": "",
            "trade_type": Order.TradeType.PAGE,
            "sign_type": "RSA2",
        }
    return {
        "provider": Order.Provider.WECHATPAY,
        "api_version": kind,
        "trade_type": Order.TradeType.JSAPI,
        "sign_type": settings.WECHATPAY_V2_SIGN_TYPE if kind == "V2" else "RSA",
    }


def _create_orders(user: User, product: Product, kind: str, numbers: list[str], **extra: object) -> None:
    expires = timezone.now() + dt.timedelta(days=1)
    fields = _order_fields(kind)
    rows = [
        Order(
            out_trade_no=number,
            user=user,
            product=product,
            quantity=1,
            amount=product.price,
            expires_at=expires,
            **fields,
            **extra,
        )
        for number in numbers
    ]
    Order.objects.bulk_create(rows, batch_size=2000)


def _orders_of_user(user: User, run: str) -> None:
    """60 orders of the `orders` user: two products, both versions, pending, paid and closed."""
    a, _ = Product.objects.get_or_create(sku="bench-a", defaults={"title": "Bench A", "price": PRICE})
    b, _ = Product.objects.get_or_create(sku="bench-b", defaults={"title": "Bench B", "price": 2 * PRICE})
    now = timezone.now()
    rows = []
    for n in range(ORDERS_OF_USER):
        product = (a, b)[n % 2]
        status = (Order.Status.PENDING, Order.Status.PAID, Order.Status.CLOSED)[n % 3]
        rows.append(
            Order(
                out_trade_no=f"BO{run}{n:06d}",
                user=user,
                product=product,
                quantity=1 + n % 3,
                amount=product.price * (1 + n % 3),
                provider=Order.Provider.WECHATPAY,
                api_version=("V2", "V3")[n % 2],
                trade_type=Order.TradeType.JSAPI,
                sign_type="RSA" if n % 2 else settings.WECHATPAY_V2_SIGN_TYPE,
                status=status,
                transaction_id=f"4200BO{run}{n:06d}" if status == Order.Status.PAID else None,
                paid_at=now if status == Order.Status.PAID else None,
                closed_at=now if status == Order.Status.CLOSED else None,
                expires_at=now + dt.timedelta(days=1),
            )
        )
    Order.objects.bulk_create(rows)


def _capture(work: Path, name: str, send: Callable[[], Any]) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as ctx:
        response = send()
    with open(work / f"sql-{name}.log", "a", encoding="utf-8") as fh:
        fh.write(f"-- {name}: {len(ctx.captured_queries)} statements, HTTP {response.status_code}\n")
        for q in ctx.captured_queries:
            fh.write(q["sql"] + "\n")
    return len(ctx.captured_queries), response


def _graphql(client: Client, query: str, variables: dict[str, Any] | None = None, token: str = "") -> Any:
    headers = {"HTTP_AUTHORIZATION": f"JWT {token}"} if token else {}
    body = json.dumps({"query": query, "variables": variables or {}})
    return client.post("/graphql/", data=body, content_type="application/json", **headers)


def _probe(work: Path, run: str, token: str, notify_user: User, product: Product) -> dict[str, str]:
    """SQL statements per request of each scenario, through the whole stack (middleware, view), as a
    worker runs them: each request is sent twice and the second is the figure reported (the first
    may pay for a new connection). The same numbers are pinned by the test suite."""
    client = Client(HTTP_HOST="127.0.0.1")
    out: dict[str, str] = {}

    def twice(name: str, send: Callable[[int], Any], ok: Callable[[Any], bool]) -> None:
        counts = []
        for n in range(2):
            count, response = _capture(work, name, lambda n=n: send(n))
            if not ok(response):
                raise SystemExit(f"{name} probe failed: HTTP {response.status_code} {response.content[:300]!r}")
            counts.append(count)
        out[f"{name}_queries"] = str(counts[1])

    def answered(response: Any, field: str, check: Callable[[Any], bool] = bool) -> bool:
        data = json.loads(response.content) if response.status_code == 200 else {}
        return "errors" not in data and check((data.get("data") or {}).get(field))

    twice("me", lambda n: _graphql(client, ME_QUERY, token=token), lambda r: answered(r, "me"))
    # Each a first login of a new sandbox user, as the login scenario's are.
    twice(
        "login",
        lambda n: _graphql(client, LOGIN_QUERY, {"code": f"p{run}{n}"}),
        lambda r: answered(r, "wechatLogin", lambda d: bool(d and d["created"])),
    )
    twice(
        "orders",
        lambda n: _graphql(client, ORDERS_QUERY, token=token),
        lambda r: answered(r, "orders", lambda d: bool(d) and len(d["edges"]) == 50),
    )
    numbers = {kind: [out_trade_no(kind, run, "probe", n) for n in range(2)] for kind in KIND_LETTERS}
    for kind, nums in numbers.items():
        _create_orders(notify_user, product, kind, nums)
    v2_bodies = [v2_notify(number, product.price, settings.WECHATPAY_V2_SIGN_TYPE) for number in numbers["V2"]]
    twice(
        "notify_v2",
        lambda n: client.post("/notify/wechatpay/v2/", v2_bodies[n], content_type="text/xml"),
        lambda r: r.status_code == 200 and V2_OK in r.content,
    )
    _signer_init(_platform_key())
    v3_requests = []
    for number in numbers["V3"]:
        headers, body = v3_headers(_v3_line((number, product.price)))
        extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k != "Content-Type"}
        v3_requests.append((body, extra))
    twice(
        "notify_v3",
        lambda n: client.post(
            "/notify/wechatpay/v3/", v3_requests[n][0], content_type="application/json", **v3_requests[n][1]
        ),
        lambda r: r.status_code == 204,
    )
    alipay_bodies = alipay_notifies([(number, product.price, product.title) for number in numbers["ALIPAY"]])
    twice(
        "notify_alipay",
        lambda n: client.post("/notify/alipay/", alipay_bodies[n], content_type=ALIPAY_CONTENT_TYPE),
        lambda r: r.status_code == 200 and r.content == ALIPAY_OK,
    )
    # A text message of each kind (a keyword, a keyword in a sentence, no keyword), twice each, every one a
    # fresh MsgId; the reply decrypted and read as WeChat reads it. The figure is the most of the three.
    box = oa_text.crypto()
    texts = len(oa_text.TEXTS)
    oa_requests = [(fields, oa_text.request(box, fields)) for _, fields in oa_text.messages(run, "probe", 2 * texts)]

    last: list[int] = []

    def oa_send(index: int) -> Any:
        last[:] = [index]
        return client.post(*oa_requests[index][1], content_type="text/xml")

    def oa_answered(response: Any) -> bool:
        if response.status_code != 200 or b"<Encrypt>" not in response.content:
            return False
        fields = oa_requests[last[0]][0]
        reply = oa_text.read_reply(box, response.content)
        return reply is not None and oa_text.expected_reply(reply, fields["FromUserName"], last[0] % texts)

    oa_counts = []
    for which in range(texts):
        # Requests `which` and `which + texts` carry the same text, from two followers.
        twice("oa_text", lambda n, which=which: oa_send(which + n * texts), oa_answered)
        oa_counts.append(int(out["oa_text_queries"]))
    out["oa_text_queries"] = str(max(oa_counts))
    probed = [number for nums in numbers.values() for number in nums]
    paid = Order.objects.filter(out_trade_no__in=probed, status=Order.Status.PAID).count()
    if paid != len(probed):
        raise SystemExit(f"probe: {paid} of {len(probed)} probe orders are PAID after their notifies")
    return out


def setup(
    work: Path, run: str, orders_user_id: int, token: str, phases: str, rates: dict[str, float], oa_rate: float
) -> None:
    started = time.monotonic()
    user = User.objects.get(pk=orders_user_id)
    _orders_of_user(user, run)
    oa_text.create_replies()
    messages = 0
    product = Product.objects.get(sku="bench-a")
    notify_user = User(username=f"bench_notify_{run}")
    notify_user.set_unusable_password()
    notify_user.save()
    created = 0
    for phase, seconds in _phases(phases):
        if oa_rate > 0:
            # The server refuses a timestamp over 5 minutes off (officialaccount/views.py): only counted
            # here; `messages` builds and signs each phase's right before it runs.
            count = math.ceil(oa_rate * seconds)
            oa_text.plan_phase(work, run, phase, count)
            messages += count
        for kind, rate in rates.items():
            if rate <= 0:
                continue
            count = math.ceil(rate * seconds)
            numbers = [out_trade_no(kind, run, phase, n) for n in range(count)]
            with transaction.atomic():
                _create_orders(notify_user, product, kind, numbers)
            created += count
            if kind == "ALIPAY":
                # No timestamp of theirs is checked: signed here, once, like the v2 bodies.
                bodies = alipay_notifies([(number, product.price, product.title) for number in numbers])
                with open(work / f"notify_alipay-{phase}.lines", "wb") as fh:
                    for number, body in zip(numbers, bodies, strict=True):
                        fh.write(number.encode() + b"\t" + body + b"\n")
            elif kind == "V2":
                sign_type = settings.WECHATPAY_V2_SIGN_TYPE
                with open(work / f"notify_v2-{phase}.lines", "wb") as fh:
                    for number in numbers:
                        body = v2_notify(number, product.price, sign_type)
                        assert b"\n" not in body and b"\t" not in body
                        fh.write(number.encode() + b"\t" + body + b"\n")
            else:
                with open(work / f"notify_v3-{phase}.orders", "w", encoding="utf-8") as fh:
                    fh.writelines(f"{number}\t{product.price}\n" for number in numbers)
    out = _probe(work, run, token, notify_user, product)
    out["notify_orders_created"] = str(created)
    out["oa_messages_built"] = str(messages)
    (work / "sql.txt").write_text(" ".join(f"{k}={v}" for k, v in out.items()) + "\n", encoding="utf-8")
    counts = ", ".join(
        f"{key.removesuffix('_queries')} {value}" for key, value in out.items() if key.endswith("_queries")
    )
    print(
        f"[bench] fixtures: {ORDERS_OF_USER} orders of the orders user, {created} pending notify orders, "
        f"{messages} official-account text messages to build; "
        f"SQL per request: {counts}; {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )


def sign(work: Path, phase: str, limit: int | None) -> None:
    started = time.monotonic()
    items = []
    with open(work / f"notify_v3-{phase}.orders", encoding="utf-8") as fh:
        for line in fh:
            number, amount = line.split()
            items.append((number, int(amount)))
    if limit is not None:
        items = items[:limit]
    pem = _platform_key()
    workers = min(os.cpu_count() or 1, 4)
    if len(items) >= 1000 and workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers, _signer_init, (pem,)) as pool:
            lines = pool.map(_v3_line, items, chunksize=256)
    else:
        _signer_init(pem)
        lines = [_v3_line(item) for item in items]
    with open(work / f"notify_v3-{phase}.lines", "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")
    # The first one, checked here as the server will check it (signature, serial, clock, resource).
    headers, body = v3_headers(lines[0])
    notify = providers.wechatpay("V3").parse_notify(headers, body)  # type: ignore[union-attr]
    assert notify.trade is not None and notify.trade.out_trade_no == items[0][0]
    print(
        f"[bench] signed {len(lines)} v3 notifies for {phase} in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )


# --- verify ------------------------------------------------------------------------------------


def _wrk_fields(path: Path) -> dict[str, str]:
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("BENCH_RESULT "):
                return dict(part.split("=", 1) for part in line.split() if "=" in part)
    except OSError:
        pass
    return {}


def _answers(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"ok": set(), "bad": set(), "inflight": set()}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            kind, _, number = line.strip().partition(" ")
            out[kind].add(number)
    return out


def verify(work: Path, phases: str, modes: str, run: str) -> int:
    status = 0
    for mode in modes.split():
        kind = SCENARIO_KINDS.get(mode)
        if kind is None:
            continue
        totals = dict.fromkeys(("good", "answered", "sent", "paid", "events", "inflight", "inflight_paid"), 0)
        problems: list[str] = []
        for phase, _ in _phases(phases):
            wrk = _wrk_fields(work / f"{phase}-{mode}.txt")
            try:
                answers = _answers(work / f"{phase}-{mode}.txt.ids")
            except OSError:
                problems.append(f"{phase}: no answers file")
                continue
            prefix = f"B{KIND_LETTERS[kind]}{run}{_tag(phase)}"
            paid = set(
                Order.objects.filter(out_trade_no__startswith=prefix, status=Order.Status.PAID).values_list(
                    "out_trade_no", flat=True
                )
            )
            events = PaymentEvent.objects.filter(
                order__out_trade_no__startswith=prefix, kind="TRANSACTION.SUCCESS", outcome="APPLIED"
            ).count()
            ok, bad, inflight = answers["ok"], answers["bad"], answers["inflight"]
            answered = len(ok) + len(bad) + int(wrk.get("script_checks", 0))
            if len(ok) != int(wrk.get("good", -1)) or answered != int(wrk.get("requests", -1)):
                problems.append(f"{phase}: the answers file does not match wrk's counts")
            if ok - paid:
                problems.append(f"{phase}: {len(ok - paid)} well-answered notifies left their order unpaid")
            if paid & bad:
                problems.append(f"{phase}: {len(paid & bad)} orders PAID although their notify was refused")
            if paid - ok - inflight:
                problems.append(f"{phase}: {len(paid - ok - inflight)} orders PAID that no sent notify explains")
            if events != len(paid):
                problems.append(f"{phase}: {events} payment events for {len(paid)} PAID orders")
            totals["good"] += len(ok)
            totals["answered"] += len(ok) + len(bad)
            totals["sent"] += int(wrk.get("issued", 0))
            totals["paid"] += len(paid)
            totals["events"] += events
            totals["inflight"] += len(inflight)
            totals["inflight_paid"] += len(paid & inflight)
        ok_flag = int(not problems)
        status |= 0 if ok_flag else 1
        print(
            f"VERIFY mode={mode} ok={ok_flag} "
            + " ".join(f"{k}={v}" for k, v in totals.items())
            + (" problems=" + ";".join(p.replace(" ", "_") for p in problems) if problems else "")
        )
    return status


def main() -> int:
    args = sys.argv[1:]
    if len(args) == 10 and args[0] == "setup":
        rates = dict(zip(("V2", "V3", "ALIPAY"), map(float, args[6:9]), strict=True))
        setup(Path(args[1]), args[2], int(args[3]), args[4], args[5], rates, float(args[9]))
        return 0
    if len(args) == 3 and args[0] == "replies":
        work, phase = Path(args[1]), args[2]
        line = oa_text.check(work, phase, int(_wrk_fields(work / f"{phase}-oa_text.txt").get("good", -1)))
        print(line)
        return 0 if " ok=1 " in line else 1
    if len(args) == 3 and args[0] == "messages":
        oa_text.build_phase(Path(args[1]), args[2])
        return 0
    if len(args) in (3, 4) and args[0] == "sign":
        sign(Path(args[1]), args[2], int(args[3]) if len(args) == 4 and args[3] else None)
        return 0
    if len(args) == 5 and args[0] == "verify":
        return verify(Path(args[1]), args[2], args[3], args[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

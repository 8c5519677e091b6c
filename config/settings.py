"""Settings, every one from the environment (see .env.example and the README).

With no environment at all this is the embedded default: DEBUG, SQLite (the shared
cache a table in it), eager Celery and the provider sandbox, so `make run` needs nothing.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import environ
from django.core.exceptions import ImproperlyConfigured

from config import dev_secrets

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("READ_DOT_ENV", default=True) and (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

_REAL_CREDENTIALS = bool(os.environ.get("WECHAT_MINIPROGRAM_SECRET") or os.environ.get("WECHATPAY_MCH_ID"))
# Development secrets, made per checkout on first use (config/dev_secrets.py); never used with DEBUG=0.
DEV_SECRETS_FILE = Path(env.str("DEV_SECRETS_FILE", default=str(BASE_DIR / ".dev-secrets.json")))
if not DEBUG or _REAL_CREDENTIALS:
    # Production (or anything holding real provider credentials) sets its own secrets, long and distinct.
    SECRET_KEY = env.str("SECRET_KEY", default="")
    JWT_SECRET = env.str("JWT_SECRET_KEY", default="")
    _dev = dev_secrets.load(DEV_SECRETS_FILE) if DEV_SECRETS_FILE.is_file() else {}
    if len(SECRET_KEY) < 50 or SECRET_KEY in _dev.values():
        raise ImproperlyConfigured(
            "Set SECRET_KEY to at least 50 random characters (DEBUG=0 or real provider credentials)."
        )
    if len(JWT_SECRET) < 32 or JWT_SECRET in _dev.values():
        raise ImproperlyConfigured(
            "Set JWT_SECRET_KEY to at least 32 random characters (DEBUG=0 or real provider credentials)."
        )
    if JWT_SECRET == SECRET_KEY:
        raise ImproperlyConfigured("JWT_SECRET_KEY must differ from SECRET_KEY.")
else:
    _dev = dev_secrets.load(DEV_SECRETS_FILE)
    SECRET_KEY = env.str("SECRET_KEY", default=_dev["SECRET_KEY"])
    JWT_SECRET = env.str("JWT_SECRET_KEY", default=_dev["JWT_SECRET_KEY"])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The port `make run` serves on: the embedded default's notify URLs follow it.
PORT = env.int("PORT", default=8000)
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default=f"http://localhost:{PORT}").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "graphene_django",
    "django_ratelimit",
    "core",
    "accounts",
    "payments",
    "notifications",
    "officialaccount",
    "providers.sandbox",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS, GraphiQL's assets) from the app itself, also under gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # templates/: overrides of third-party templates (GraphiQL's page, served without a CDN).
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Persistent connections in production; per-request in development.
        conn_max_age=env.int("DB_CONN_MAX_AGE", default=0 if DEBUG else 600),
        # A health check costs a round trip per request; off, a dropped connection fails one request.
        conn_health_checks=env.bool("DB_CONN_HEALTH_CHECKS", default=False),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent requests (notifies, logins, refreshes) queue for the one writer instead of failing:
    # WAL lets readers go on beside it, IMMEDIATE takes the write lock when a transaction begins
    # (a read-then-write transaction cannot find it taken halfway and fail with "database is
    # locked"), and a writer waits up to 20 s for it.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL;"
    )
    # A file, not :memory:, so live-server tests get their own connections per thread: test-<name>
    # beside the database (test-db.sqlite3 for the default), so suites on other databases do not collide.
    _sqlite_file = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(_sqlite_file.with_name("test-" + _sqlite_file.name))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- cache, locks, rate limits -------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="wxb")
# The cache every process shares (sandbox state, locks, login-code claims). Redis when REDIS_URL is set.
# Without it, a table in the database (`migrate` creates it): the server and management commands
# (`reconcile_orders` by hand) see the same sandbox orders, and they survive a restart. CACHE_URL
# names another (django-environ form: locmemcache://, dbcache://table, ...); the suite uses locmem without Redis.
CACHE_URL = env.str("CACHE_URL", default="")
if CACHE_URL:
    CACHES = {"default": {**env.cache_url_config(CACHE_URL), "KEY_PREFIX": CACHE_KEY_PREFIX}}
elif REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
            },
        }
    }
else:
    CACHES = {
        "default": {"BACKEND": "core.cache.DatabaseCache", "LOCATION": "wxb_cache", "KEY_PREFIX": CACHE_KEY_PREFIX},
        # Rate-limit counters need no sharing in one runserver process, and a database write per request
        # would queue every request behind SQLite's one writer.
        "ratelimit": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ratelimit"},
    }

RATELIMIT_USE_CACHE = "ratelimit" if "ratelimit" in CACHES else "default"
RATELIMIT_ENABLE = True
# Behind a proxy, name the header carrying the client address (e.g. HTTP_X_REAL_IP).
RATELIMIT_IP_META_KEY = env.str("RATELIMIT_IP_META_KEY", default="") or None
RATELIMIT_LOGIN = env.str("RATELIMIT_LOGIN", default="30/m")
RATELIMIT_LOGIN_CODE = env.str("RATELIMIT_LOGIN_CODE", default="5/m")
RATELIMIT_ORDER = env.str("RATELIMIT_ORDER", default="60/m")
# Alipay return page loads per IP: each asks Alipay for the order's state.
RATELIMIT_ALIPAY_RETURN = env.str("RATELIMIT_ALIPAY_RETURN", default="30/m")
# tokenAuth (staff passwords), per client address and per username.
RATELIMIT_STAFF_LOGIN = env.str("RATELIMIT_STAFF_LOGIN", default="5/m")

SILENCED_SYSTEM_CHECKS = [
    # HSTS preload is a commitment to browser lists; opt in with SECURE_HSTS_PRELOAD=1.
    "security.W021",
]
if not REDIS_URL:
    # Without Redis this is one runserver process (or the suite), where locmem counts correctly.
    SILENCED_SYSTEM_CHECKS += ["django_ratelimit.E003", "django_ratelimit.W001"]

# --- Celery -------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
# A task whose pool process died (OOM, SIGKILL) goes back to the queue instead of being dropped: every task
# here is safe to run again (a push delivery is claimed before its send).
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A task taken by a worker that died is handed to another after this many seconds (Redis broker). Above
# every countdown (push retries, task retries), or a task waiting for its countdown is handed out twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600)}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# Recovers notifies missed while we were down (run `celery -A config beat`).
CELERY_BEAT_SCHEDULE = {
    "reconcile-orders": {"task": "payments.reconcile_orders", "schedule": env.int("RECONCILE_EVERY", default=120)},
    # Resumes pushes paused at the daily quota (within a minute of the reset), and marks deliveries of dead
    # workers UNKNOWN.
    "push-housekeeping": {"task": "notifications.housekeeping", "schedule": 60},
}

# --- auth: JWT ----------------------------------------------------------------
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
GRAPHQL_JWT = {
    "JWT_SECRET_KEY": JWT_SECRET,
    "JWT_ALGORITHM": "HS256",
    # The request user: active only, read with their mini-program openid in one query.
    "JWT_GET_USER_BY_NATURAL_KEY_HANDLER": "accounts.selectors.active_user_for_token",
    "JWT_VERIFY_EXPIRATION": True,
    "JWT_EXPIRATION_DELTA": timedelta(minutes=env.int("JWT_EXPIRATION_MINUTES", default=10)),
    # Refresh tokens are our own rotating model (accounts.RefreshToken), not the JWT's origIat.
    "JWT_ALLOW_REFRESH": False,
    "JWT_REFRESH_EXPIRATION_DELTA": timedelta(days=env.int("JWT_REFRESH_DAYS", default=30)),
}
# A refresh token presented again this soon after its rotation (parallel requests after a 401) gets a
# fresh pair instead of signing the user out everywhere (accounts.services.refresh_tokens).
JWT_REFRESH_REUSE_SECONDS = env.int("JWT_REFRESH_REUSE_SECONDS", default=30)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- GraphQL ------------------------------------------------------------------
GRAPHENE = {
    "SCHEMA": "schema.schema.schema",
    "ATOMIC_MUTATIONS": False,
    "RELAY_CONNECTION_MAX_LIMIT": 100,
    # graphene-django adds its debug middleware (around every resolver) when DEBUG; we expose no _debug field.
    "MIDDLEWARE": [],
}
GRAPHIQL = env.bool("GRAPHIQL", default=DEBUG)
GRAPHQL_INTROSPECTION = env.bool("GRAPHQL_INTROSPECTION", default=DEBUG)
GRAPHQL_MAX_DEPTH = env.int("GRAPHQL_MAX_DEPTH", default=10)
GRAPHQL_MAX_FIELDS = env.int("GRAPHQL_MAX_FIELDS", default=300)
GRAPHQL_MAX_ALIASES = env.int("GRAPHQL_MAX_ALIASES", default=30)
# One field selected more often than this in one place is refused before the standard rules, whose
# overlapping-fields check compares such copies pairwise (quadratic).
GRAPHQL_MAX_REPEATS = env.int("GRAPHQL_MAX_REPEATS", default=10)
GRAPHQL_MAX_TOKENS = env.int("GRAPHQL_MAX_TOKENS", default=1000)
GRAPHQL_MAX_BODY_BYTES = env.int("GRAPHQL_MAX_BODY_BYTES", default=1024 * 1024)
GRAPHQL_DOCUMENT_CACHE_SIZE = env.int("GRAPHQL_DOCUMENT_CACHE_SIZE", default=512)
DATA_UPLOAD_MAX_MEMORY_SIZE = GRAPHQL_MAX_BODY_BYTES

# --- CORS ---------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "x-request-id")

# --- providers ----------------------------------------------------------------
WECHAT_MINIPROGRAM_APPID = env.str("WECHAT_MINIPROGRAM_APPID", default="")
WECHAT_MINIPROGRAM_SECRET = env.str("WECHAT_MINIPROGRAM_SECRET", default="")
WECHAT_API_BASE_URL = env.str("WECHAT_API_BASE_URL", default="https://api.weixin.qq.com").rstrip("/")
# stable_token keeps several processes from invalidating each other's token.
WECHAT_USE_STABLE_TOKEN = env.bool("WECHAT_USE_STABLE_TOKEN", default=True)
# Encrypted user data whose watermark is older than this (seconds) is refused.
WECHAT_USER_DATA_MAX_AGE = env.int("WECHAT_USER_DATA_MAX_AGE", default=600)
PROVIDER_CONNECT_TIMEOUT = env.float("PROVIDER_CONNECT_TIMEOUT", default=3.0)
PROVIDER_READ_TIMEOUT = env.float("PROVIDER_READ_TIMEOUT", default=5.0)
# Outbound proxy for provider calls (the environment's HTTPS_PROXY is not read).
PROVIDER_HTTP_PROXY = env.str("PROVIDER_HTTP_PROXY", default="")

# --- WeChat Pay ---
WECHATPAY_APPID = env.str("WECHATPAY_APPID", default="")
WECHATPAY_MCH_ID = env.str("WECHATPAY_MCH_ID", default="")
WECHATPAY_API_KEY = env.str("WECHATPAY_API_KEY", default="")  # v2
WECHATPAY_API_V3_KEY = env.str("WECHATPAY_API_V3_KEY", default="")
WECHATPAY_PRIVATE_KEY = env.str("WECHATPAY_PRIVATE_KEY", default="")  # PEM text or path
WECHATPAY_CERT_SERIAL_NO = env.str("WECHATPAY_CERT_SERIAL_NO", default="")
WECHATPAY_PUBLIC_KEY = env.str("WECHATPAY_PUBLIC_KEY", default="")  # PEM text or path
WECHATPAY_PUBLIC_KEY_ID = env.str("WECHATPAY_PUBLIC_KEY_ID", default="")  # PUB_KEY_ID_...
WECHATPAY_PLATFORM_CERTS = env.list("WECHATPAY_PLATFORM_CERTS", default=[])  # PEM paths (older merchants)
WECHATPAY_CLIENT_CERT = env.str("WECHATPAY_CLIENT_CERT", default="")  # v2 refunds: apiclient_cert.pem path
WECHATPAY_CLIENT_KEY = env.str("WECHATPAY_CLIENT_KEY", default="")  # v2 refunds: apiclient_key.pem path
WECHATPAY_API_VERSION = env.str("WECHATPAY_API_VERSION", default="V3").upper()
WECHATPAY_V2_SIGN_TYPE = env.str("WECHATPAY_V2_SIGN_TYPE", default="HMAC-SHA256")
WECHATPAY_BASE_URL = env.str("WECHATPAY_BASE_URL", default="https://api.mch.weixin.qq.com").rstrip("/")
SANDBOX_WECHATPAY_PLATFORM_PRIVATE_KEY = env.str("SANDBOX_WECHATPAY_PLATFORM_PRIVATE_KEY", default="")
# Seconds the sandbox waits before each retry of a notify our endpoint did not accept: WeChat Pay's
# own schedule (15s, 15s, 30s, 3m, 10m, 20m, 30m, ...) compressed; empty sends each notify once.
SANDBOX_NOTIFY_RETRY_SECONDS = tuple(
    env.list("SANDBOX_NOTIFY_RETRY_SECONDS", cast=float, default=[1.0, 2.0, 5.0, 10.0, 30.0])
)
if any(not 0 <= pause <= 3600 for pause in SANDBOX_NOTIFY_RETRY_SECONDS):
    raise ImproperlyConfigured("SANDBOX_NOTIFY_RETRY_SECONDS: each pause must be between 0 and 3600 seconds.")
# Seconds an unpaid order stays payable; reconciliation closes it after that.
ORDER_TTL = env.int("ORDER_TTL", default=1800)
# Pending orders older than this (seconds) are queried by reconciliation.
RECONCILE_AFTER = env.int("RECONCILE_AFTER", default=300)
NOTIFY_MAX_BYTES = env.int("NOTIFY_MAX_BYTES", default=64 * 1024)

# The sandbox serves the provider APIs when no credentials are configured. With
# DEBUG=0 it mounts only when SANDBOX=1 is explicit.
_sandbox_env = os.environ.get("SANDBOX", "").strip()
if _sandbox_env:
    SANDBOX = env.bool("SANDBOX")
    if SANDBOX and not DEBUG and _sandbox_env != "1":
        raise ImproperlyConfigured("With DEBUG=0 the sandbox mounts only with SANDBOX=1.")
else:
    SANDBOX = DEBUG and not WECHAT_MINIPROGRAM_SECRET
if SANDBOX and not DEBUG and os.environ.get("WECHATPAY_MCH_ID"):
    # The sandbox cashier pays any order without money: never next to a real merchant in production.
    raise ImproperlyConfigured("SANDBOX=1 with DEBUG=0 and a real WECHATPAY_MCH_ID is refused.")
if SANDBOX and not WECHAT_MINIPROGRAM_SECRET:
    # Fixed test credentials; real ones given in the environment are used instead.
    WECHAT_MINIPROGRAM_APPID = WECHAT_MINIPROGRAM_APPID or "wxsandbox000000001"
    WECHAT_MINIPROGRAM_SECRET = "sandbox-secret-0123456789abcdef"
WECHATPAY_APPID = WECHATPAY_APPID or WECHAT_MINIPROGRAM_APPID
if SANDBOX and not WECHATPAY_MCH_ID:
    WECHATPAY_MCH_ID = "1900000109"
    WECHATPAY_API_KEY = "sandboxapikey0123456789abcdefABCD"[:32]
    WECHATPAY_API_V3_KEY = "sandboxapiv3key0123456789abcdefg"[:32]
    WECHATPAY_PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092026112100000000000001"
    WECHATPAY_CERT_SERIAL_NO = "5157F09EFDC096DE15EBE81A47057A72SANDBOX"

# --- WeChat official account ---
WECHAT_OA_APPID = env.str("WECHAT_OA_APPID", default="")
WECHAT_OA_SECRET = env.str("WECHAT_OA_SECRET", default="")
# The server URL's Token, and its EncodingAESKey (43 characters): safe-mode messages need it.
WECHAT_OA_TOKEN = env.str("WECHAT_OA_TOKEN", default="")
WECHAT_OA_AES_KEY = env.str("WECHAT_OA_AES_KEY", default="")
if SANDBOX and not WECHAT_OA_SECRET:
    # The sandbox's test account; real credentials given in the environment are used instead.
    WECHAT_OA_APPID = WECHAT_OA_APPID or "wxsandboxoa0000001"
    WECHAT_OA_SECRET = "sandbox-oa-secret-0123456789abcd"
    WECHAT_OA_TOKEN = WECHAT_OA_TOKEN or "sandboxtoken"
    WECHAT_OA_AES_KEY = WECHAT_OA_AES_KEY or "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
if WECHAT_OA_AES_KEY and len(WECHAT_OA_AES_KEY) != 43:
    raise ImproperlyConfigured("WECHAT_OA_AES_KEY is the EncodingAESKey: 43 characters, as the MP console shows it.")
# Hosts an OAuth redirectUri and a jssdkConfig url may name: the CORS origins' hosts by default, and in
# sandbox mode this server's.
_OWN_HOSTS = [urlsplit(origin).netloc for origin in CORS_ALLOWED_ORIGINS] + (
    [urlsplit(PUBLIC_BASE_URL).netloc] if SANDBOX else []
)
WECHAT_OA_REDIRECT_HOSTS = env.list("WECHAT_OA_REDIRECT_HOSTS", default=_OWN_HOSTS)
WECHAT_OA_JSSDK_HOSTS = env.list("WECHAT_OA_JSSDK_HOSTS", default=_OWN_HOSTS)

# --- Alipay ---
ALIPAY_APPID = env.str("ALIPAY_APPID", default="")
ALIPAY_PRIVATE_KEY = env.str("ALIPAY_PRIVATE_KEY", default="")  # the app's, PEM text or path
# Public-key mode: Alipay's public key. Certificate mode instead: the three certificates (PEM text or paths).
ALIPAY_PUBLIC_KEY = env.str("ALIPAY_PUBLIC_KEY", default="")
ALIPAY_APP_CERT = env.str("ALIPAY_APP_CERT", default="")
ALIPAY_PUBLIC_CERT = env.str("ALIPAY_PUBLIC_CERT", default="")
ALIPAY_ROOT_CERT = env.str("ALIPAY_ROOT_CERT", default="")
ALIPAY_SELLER_ID = env.str("ALIPAY_SELLER_ID", default="")  # the merchant's PID (2088...)
# The key the sandbox signs as Alipay with (must match ALIPAY_PUBLIC_KEY when that is given); generated otherwise.
SANDBOX_ALIPAY_PRIVATE_KEY = env.str("SANDBOX_ALIPAY_PRIVATE_KEY", default="")
if SANDBOX and not ALIPAY_APPID:
    # The sandbox's test app and merchant; real ones given in the environment are used instead.
    ALIPAY_APPID, ALIPAY_SELLER_ID = "9021000000000001", ALIPAY_SELLER_ID or "2088000000000001"
# In sandbox mode the gateway is the sandbox's own page: the payer's browser opens it, our calls to it
# are answered in-process. Alipay's own sandbox is https://openapi-sandbox.dl.alipaydev.com/gateway.do.
ALIPAY_GATEWAY = env.str(
    "ALIPAY_GATEWAY",
    default=f"{PUBLIC_BASE_URL}/sandbox/alipay/gateway.do" if SANDBOX else "https://openapi.alipay.com/gateway.do",
)
# Hosts a createAlipayOrder returnUrl may name (no open redirect): the CORS origins' hosts by default, and in
# sandbox mode this server's.
ALIPAY_RETURN_HOSTS = env.list(
    "ALIPAY_RETURN_HOSTS",
    default=_OWN_HOSTS,
)

# --- pushes (notifications) ---
# Sends started in any 1.05 s across every worker (counters per 50 ms in the shared cache); 0: no limit.
PUSH_RATE_PER_SECOND = env.int("PUSH_RATE_PER_SECOND", default=20)
# Deliveries per Celery task of a batch's fan-out.
PUSH_CHUNK_SIZE = env.int("PUSH_CHUNK_SIZE", default=200)
# Seconds a claimed delivery may stay SENDING before it is taken for a dead worker's (UNKNOWN, never resent),
# and a running batch may make no progress before housekeeping fans it out again.
PUSH_CLAIM_TIMEOUT = env.int("PUSH_CLAIM_TIMEOUT", default=300)
# Sends of one delivery (busy, per-minute limit, timeouts) before it is FAILED; retries back off from
# PUSH_RETRY_BACKOFF seconds, doubling.
PUSH_MAX_ATTEMPTS = env.int("PUSH_MAX_ATTEMPTS", default=3)
PUSH_RETRY_BACKOFF = env.int("PUSH_RETRY_BACKOFF", default=10)
# A template message whose answer was lost is resent with its client_msg_id, which WeChat honours for 10
# minutes, only within this many seconds of the loss (later it is UNKNOWN); the backoffs must fit in them.
PUSH_RESEND_WITHIN = 540
if (
    PUSH_MAX_ATTEMPTS < 1
    or PUSH_RETRY_BACKOFF < 0
    or PUSH_RETRY_BACKOFF * (2 ** (PUSH_MAX_ATTEMPTS - 1) - 1) > PUSH_RESEND_WITHIN
):
    raise ImproperlyConfigured(
        "PUSH_MAX_ATTEMPTS and PUSH_RETRY_BACKOFF: at least one attempt, and all retries within 9 minutes "
        "(PUSH_RETRY_BACKOFF * (2 ** (PUSH_MAX_ATTEMPTS - 1) - 1) <= 540)."
    )
# Identical bad-data or bad-template answers (47003, 40037) after which a batch stops.
PUSH_STOP_AFTER = env.int("PUSH_STOP_AFTER", default=3)
# Seconds a batch pauses at the daily quota (45009); 0: until the next midnight, Asia/Shanghai.
PUSH_QUOTA_PAUSE_SECONDS = env.int("PUSH_QUOTA_PAUSE_SECONDS", default=0)
# A message to the payer of each paid order: TEMPLATE (official account), SUBSCRIBE (mini-program) or empty
# (off); its template, the template's fields filled from the order (field=amount|product|out_trade_no|paid_at),
# and the mini-program page it opens.
PUSH_ON_PAID_CHANNEL = env.str("PUSH_ON_PAID_CHANNEL", default="").upper()
PUSH_ON_PAID_TEMPLATE = env.str("PUSH_ON_PAID_TEMPLATE", default="")
PUSH_ON_PAID_FIELDS = env.dict(
    "PUSH_ON_PAID_FIELDS",
    default={"amount1": "amount", "thing2": "product", "character_string3": "out_trade_no", "time4": "paid_at"},
)
PUSH_ON_PAID_PAGE = env.str("PUSH_ON_PAID_PAGE", default="")
if PUSH_ON_PAID_CHANNEL not in ("", "TEMPLATE", "SUBSCRIBE"):
    raise ImproperlyConfigured("PUSH_ON_PAID_CHANNEL: TEMPLATE, SUBSCRIBE or empty.")

# Mounts /bench/bare, the baseline view of bench/ (off unless asked for).
BENCH_ENDPOINTS = env.bool("BENCH_ENDPOINTS", default=False)

if not DEBUG and not SANDBOX and not PUBLIC_BASE_URL.startswith("https://"):
    # WeChat Pay v3 takes only https notify URLs, and providers must reach us from outside.
    raise ImproperlyConfigured("Set PUBLIC_BASE_URL to this service's public https:// address when DEBUG=0.")

# --- security -----------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("TRUST_X_FORWARDED_PROTO", default=False) else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
X_FRAME_OPTIONS = "DENY"

# --- i18n, static --------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# static/vendor: GraphiQL's scripts and styles (scripts/vendor_graphiql.py), so no page needs a CDN.
STATICFILES_DIRS = [BASE_DIR / "static"]
# With DEBUG on, whitenoise serves straight from the apps' static dirs (no collectstatic); decided here,
# not from settings.DEBUG at request time, which test runners turn off.
WHITENOISE_AUTOREFRESH = WHITENOISE_USE_FINDERS = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # With DEBUG off, `collectstatic` (the README's production steps) writes hashed, compressed copies that
    # whitenoise serves with far-future cache headers; a missing manifest is an error, not an unstyled page.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "core.storage.StaticFilesStorage"
    },
}

# --- logging ------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.middleware.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django logs 4xx/5xx with the request; our own logs carry the context we want.
        "django.request": {"level": "ERROR"},
        # At DEBUG urllib3 logs every request line, and jscode2session carries the appsecret in its
        # query. (Django's SQL log, parameters and all, is held at INFO by Django's "django" logger.)
        "urllib3": {"level": "INFO"},
    },
}

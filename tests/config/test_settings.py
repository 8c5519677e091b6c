"""Settings from the environment: production refuses unsafe secrets and an implicit sandbox; --deploy passes;
connections, introspection and the sandbox's credentials follow DEBUG and the environment.

Each case runs `manage.py` or a short script in a subprocess with a clean environment, since settings are
read at import.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.processes import clean_env, run_python

# What the settings once fell back to, published in this repository's history.
PUBLISHED_SECRETS = (
    "dev-only-insecure-secret-key-change-me-in-production-0123456789",
    "dev-only-insecure-jwt-secret-change-me-0123456789",
)
_PRINT_SECRETS = (
    "import django; django.setup(); from django.conf import settings as s; print(s.SECRET_KEY, s.JWT_SECRET)"
)

# The official account's sandbox test account (config/settings.py), served beside the mini-program.
OA_APPID, OA_SECRET = "wxsandboxoa0000001", "sandbox-oa-secret-0123456789abcd"


def _dev_secrets(tmp_path: Path) -> tuple[Path, str, str]:
    """A development run's secrets file in tmp_path, and the two secrets it made there."""
    path = tmp_path / "dev-secrets.json"
    env = clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}", DEV_SECRETS_FILE=str(path))
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    result = run_python(["-c", _PRINT_SECRETS], env)
    assert result.returncode == 0, result.stderr
    secret_key, jwt_secret = result.stdout.split()
    return path, secret_key, jwt_secret


def _secret(length: int) -> str:
    value = secrets.token_urlsafe(length)[:length]
    assert len(value) == length
    return value


def _production(tmp_path: Path, **overrides: str) -> dict[str, str]:
    values = {
        "DEBUG": "0",
        "SECRET_KEY": _secret(64),
        "JWT_SECRET_KEY": _secret(48),
        "ALLOWED_HOSTS": "api.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "WECHAT_MINIPROGRAM_APPID": "wx0123456789abcdef",
        "WECHAT_MINIPROGRAM_SECRET": _secret(32),
        "PUBLIC_BASE_URL": "https://api.example.com",
    }
    values.update(overrides)
    return clean_env(**values)


def _check(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return run_python(["manage.py", "check", *extra], env)


def _names_secret_key(text: str) -> bool:
    return re.search(r"(?<!JWT_)SECRET_KEY", text) is not None


_RESOLVE_SANDBOX = """
import django
django.setup()
from django.conf import settings
from django.urls import NoReverseMatch, reverse
try:
    print("MOUNTED", reverse("sandbox-index"), settings.SANDBOX)
except NoReverseMatch:
    print("NOT_MOUNTED", settings.SANDBOX)
"""


def _resolve_sandbox(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**env, "DJANGO_SETTINGS_MODULE": "config.settings"}
    return run_python(["-c", _RESOLVE_SANDBOX], env)


# --- secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret_key",
    [None, "development", "x" * 49, "k" * 10],
    ids=["missing", "development", "short-49", "short-10"],
)
def test_production_refuses_unsafe_secret_key(tmp_path, secret_key):
    env = _production(tmp_path)
    if secret_key is None:
        del env["SECRET_KEY"]
    elif secret_key == "development":  # this checkout's development secret, copied into production
        path, env["SECRET_KEY"], _ = _dev_secrets(tmp_path)
        env["DEV_SECRETS_FILE"] = str(path)
    else:
        env["SECRET_KEY"] = secret_key
    result = _check(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert _names_secret_key(result.stderr), result.stderr


def test_secret_key_of_exactly_fifty_characters_is_accepted(tmp_path):
    result = _check(_production(tmp_path, SECRET_KEY=_secret(50)))
    assert result.returncode == 0, result.stderr


def _jwt_case(case: str, env: dict[str, str], tmp_path: Path) -> None:
    if case == "missing":
        del env["JWT_SECRET_KEY"]
    elif case == "development":
        path, _, env["JWT_SECRET_KEY"] = _dev_secrets(tmp_path)
        env["DEV_SECRETS_FILE"] = str(path)
    elif case == "short":
        env["JWT_SECRET_KEY"] = _secret(31)
    elif case == "equal":
        env["JWT_SECRET_KEY"] = env["SECRET_KEY"]


@pytest.mark.parametrize("case", ["missing", "development", "short", "equal"])
def test_production_refuses_unsafe_jwt_secret_key(tmp_path, case):
    env = _production(tmp_path)
    _jwt_case(case, env, tmp_path)
    result = _check(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "JWT_SECRET_KEY" in result.stderr, result.stderr


def test_development_secrets_are_made_once_per_checkout_and_kept_private(tmp_path):
    path, secret_key, jwt_secret = _dev_secrets(tmp_path)
    assert _dev_secrets(tmp_path) == (path, secret_key, jwt_secret)  # the same on every run
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(secret_key) >= 50 and len(jwt_secret) >= 32 and secret_key != jwt_secret
    other = tmp_path / "another-checkout"
    other.mkdir()
    assert _dev_secrets(other)[1:] != (secret_key, jwt_secret)
    assert not {secret_key, jwt_secret} & set(PUBLISHED_SECRETS)


def test_debug_tolerates_the_development_secrets(tmp_path):
    env = clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}")
    result = _check(env)
    assert result.returncode == 0, result.stderr


# --- deploy checks -------------------------------------------------------------------------


def test_production_environment_passes_deploy_checks(tmp_path):
    result = _check(_production(tmp_path), "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_environment_with_redis_passes_deploy_checks(tmp_path):
    result = _check(_production(tmp_path, REDIS_URL="redis://127.0.0.1:6379/0"), "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_check_flags_a_missing_allowed_hosts(tmp_path):
    env = _production(tmp_path)
    del env["ALLOWED_HOSTS"]
    result = _check(env, "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stdout + result.stderr


# --- sandbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "True", "yes", "on"])
def test_production_sandbox_needs_an_explicit_one(tmp_path, value):
    result = _check(_production(tmp_path, SANDBOX=value))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SANDBOX" in result.stderr


def test_production_sandbox_one_passes_check_and_mounts(tmp_path):
    env = _production(tmp_path, SANDBOX="1")
    result = _check(env)
    assert result.returncode == 0, result.stderr
    resolved = _resolve_sandbox(env)
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.split() == ["MOUNTED", "/sandbox/", "True"]


def _drop_wechat(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if not key.startswith("WECHAT")}


@pytest.mark.parametrize("credentials", [True, False], ids=["with-credentials", "without-credentials"])
def test_production_without_sandbox_does_not_mount_it(tmp_path, credentials):
    env = _production(tmp_path)
    if not credentials:
        env = _drop_wechat(env)
    resolved = _resolve_sandbox(env)
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.split() == ["NOT_MOUNTED", "False"]


@pytest.mark.parametrize("value", ["0", "false"])
def test_production_sandbox_explicitly_off(tmp_path, value):
    env = _production(tmp_path, SANDBOX=value)
    assert _check(env).returncode == 0
    assert _resolve_sandbox(env).stdout.split() == ["NOT_MOUNTED", "False"]


def test_debug_without_credentials_mounts_the_sandbox(tmp_path):
    env = clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}")
    resolved = _resolve_sandbox(env)
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.split() == ["MOUNTED", "/sandbox/", "True"]


def test_production_needs_an_https_public_base_url(tmp_path):
    result = _check(_production(tmp_path, PUBLIC_BASE_URL="http://api.example.com"))
    assert result.returncode != 0
    assert "PUBLIC_BASE_URL" in result.stderr


def test_real_credentials_refuse_the_dev_secrets_even_with_debug(tmp_path):
    env = clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}", WECHATPAY_MCH_ID="1900000001")
    result = _check(env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_sandbox_next_to_a_real_merchant_in_production_is_refused(tmp_path):
    result = _check(_production(tmp_path, SANDBOX="1", WECHATPAY_MCH_ID="1900000001"))
    assert result.returncode != 0
    assert "WECHATPAY_MCH_ID" in result.stderr


# --- database connections ----------------------------------------------------------------------

_CONNECTION = """
import json
import django
django.setup()
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import connection
request_started.send(sender=None)
connection.ensure_connection()
request_finished.send(sender=None)
kept = connection.connection is not None
print(json.dumps({"conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"], "kept": kept}))
"""


def _connection(env: dict[str, str]) -> Any:
    result = run_python(["-c", _CONNECTION], {**env, "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    ("debug", "override", "conn_max_age"),
    [("0", None, 600), ("0", "30", 30), ("0", "0", 0), ("1", None, 0), ("1", "60", 60)],
    ids=["production", "production-30", "production-0", "debug", "debug-60"],
)
def test_connections_outlive_a_request_in_production_only(tmp_path, debug, override, conn_max_age):
    # The documented defaults (README, .env.example): 600 s with DEBUG=0, per request with DEBUG=1.
    extra = {"DB_CONN_MAX_AGE": override} if override is not None else {}
    if debug == "0":
        env = _production(tmp_path, **extra)
    else:
        env = clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}", **extra)
    # Whether the connection survives the end of a request is what the setting is for.
    assert _connection(env) == {"conn_max_age": conn_max_age, "kept": conn_max_age > 0}


# --- GraphQL introspection ---------------------------------------------------------------------

_INTROSPECT = """
import json
import django
django.setup()
from django.conf import settings
from django.test import Client
# Over https to the allowed host, as production serves it (plain http is redirected there).
response = Client().post(
    "/graphql/",
    {"query": "{ __schema { queryType { name } } }"},
    content_type="application/json",
    secure=True,
    HTTP_HOST="api.example.com",
)
print(json.dumps({"setting": settings.GRAPHQL_INTROSPECTION, "status": response.status_code, "body": response.json()}))
"""


def _introspect(env: dict[str, str]) -> Any:
    result = run_python(["-c", _INTROSPECT], {**env, "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


ANSWERED = {"setting": True, "status": 200, "body": {"data": {"__schema": {"queryType": {"name": "Query"}}}}}


def _assert_refused(out: Any) -> None:
    body = out["body"]
    assert (out["setting"], out["status"], "data" in body) == (False, 400, False), out
    # One error per introspection field asked for, each with the code the API uses for bad input.
    assert body["errors"] and {error["extensions"]["code"] for error in body["errors"]} == {"BAD_USER_INPUT"}
    assert "introspection has been disabled" in body["errors"][0]["message"]


def test_production_refuses_introspection_by_default(tmp_path):
    _assert_refused(_introspect(_production(tmp_path)))


def test_production_answers_introspection_when_asked(tmp_path):
    assert _introspect(_production(tmp_path, GRAPHQL_INTROSPECTION="1")) == ANSWERED


def test_debug_answers_introspection_by_default(tmp_path):
    env = clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}")
    assert _introspect(env) == ANSWERED


def test_debug_refuses_introspection_when_turned_off(tmp_path):
    env = clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}", GRAPHQL_INTROSPECTION="0")
    _assert_refused(_introspect(env))


# --- sandbox credentials -----------------------------------------------------------------------

# Prints the sandbox's WeChat apps, whether the configured client logs in there, and the errcode the
# sandbox answers each (appid, secret) pair given as arguments with.
_SANDBOX_APP = """
import json
import sys
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
call_command("migrate", verbosity=0)  # the sandbox's state is in the database's cache table
# Never send these codes to the real WeChat.
assert settings.SANDBOX, "the sandbox is off"
from config import providers
from providers.http import ProviderError, make_session
from providers.sandbox.transport import SandboxTransport
from providers.sandbox.wechat import openid_for
from providers.wechat.api import DEFAULT_BASE_URL, WechatAppConfig, WechatClient
from providers.wechat.token import MemoryTokenStore

def errcode(appid, secret):
    http = providers.http_config()
    session = make_session(http, {DEFAULT_BASE_URL: SandboxTransport(providers.sandbox, {DEFAULT_BASE_URL: "wechat"})})
    client = WechatClient(WechatAppConfig(appid=appid, secret=secret), session, http, MemoryTokenStore())
    try:
        client.code2session("bob")
    except ProviderError as exc:
        return exc.errcode
    return 0

apps = providers.sandbox().providers["wechat"].apps
configured = providers.wechat_miniprogram()
login = configured.code2session("alice")
pairs = sys.argv[1:]
print(json.dumps({
    "apps": {app.appid: app.secret for app in apps.values()},
    "configured": [configured.config.appid, configured.config.secret],
    "logged_in": login.openid == openid_for(configured.config.appid, "alice"),
    "errcodes": [errcode(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)],
}))
"""


def _sandbox_app(env: dict[str, str], *pairs: str) -> Any:
    result = run_python(["-c", _SANDBOX_APP, *pairs], {**env, "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _fixed_credentials(tmp_path: Path) -> tuple[str, str]:
    out = _sandbox_app(clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}"))
    appid, secret = out["configured"]
    return appid, secret


def test_sandbox_without_credentials_uses_the_fixed_test_app(tmp_path):
    debug = _sandbox_app(clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}"))
    production = _sandbox_app(_drop_wechat(_production(tmp_path, SANDBOX="1")))
    appid, secret = debug["configured"]
    assert appid and secret
    # The same app in every process and configuration: fixed, not generated per run.
    assert debug == production
    # The mini-program, and the official account's sandbox test account beside it.
    assert debug["apps"] == {appid: secret, OA_APPID: OA_SECRET}
    assert debug["logged_in"] is True


def test_sandbox_serves_the_credentials_given_in_the_environment(tmp_path):
    fixed_appid, fixed_secret = _fixed_credentials(tmp_path)
    env = _production(tmp_path, SANDBOX="1")
    appid, secret = env["WECHAT_MINIPROGRAM_APPID"], env["WECHAT_MINIPROGRAM_SECRET"]
    assert (appid, secret) != (fixed_appid, fixed_secret)
    out = _sandbox_app(env, appid, _secret(32), appid, fixed_secret, fixed_appid, fixed_secret, appid, secret)
    assert out["apps"] == {appid: secret, OA_APPID: OA_SECRET}
    assert out["configured"] == [appid, secret]
    assert out["logged_in"] is True
    # Another secret, or the fixed test app, is refused as WeChat refuses them (40125, 40013).
    assert out["errcodes"] == [40125, 40125, 40013, 0]


# --- pushes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "backoff", "refused"),
    [("3", "10", False), ("5", "36", False), ("5", "37", True), ("0", "10", True), ("3", "-1", True)],
)
def test_push_retries_must_fit_in_wechats_client_msg_id_window(tmp_path, attempts, backoff, refused):
    """All retries of a delivery within 9 minutes: 36 * (2^4 - 1) = 540 s is the longest allowed."""
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DEV_SECRETS_FILE=str(tmp_path / "s.json"))
    result = _check({**env, "PUSH_MAX_ATTEMPTS": attempts, "PUSH_RETRY_BACKOFF": backoff})
    assert (result.returncode != 0) is refused, result.stderr
    if refused:
        assert "ImproperlyConfigured" in result.stderr and "PUSH_RETRY_BACKOFF" in result.stderr

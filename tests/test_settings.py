"""Settings from the environment: production refuses unsafe secrets and an implicit sandbox; --deploy passes.

Each case runs `manage.py` in a subprocess with a clean environment, since settings are read at import.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-insecure-secret-key-change-me-in-production-0123456789"
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0123456789"

# Variables the settings read (or that would point a subprocess elsewhere); none may leak in.
_SCRUB_PREFIXES = ("DJANGO_", "WECHAT", "ALIPAY", "GRAPHQL_", "JWT_", "SECURE_", "RATELIMIT_", "CELERY_", "DB_")
_SCRUB_NAMES = {
    "DEBUG",
    "SECRET_KEY",
    "SANDBOX",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "REDIS_URL",
    "GRAPHIQL",
    "PUBLIC_BASE_URL",
    "CORS_ALLOWED_ORIGINS",
    "BENCH_ENDPOINTS",
    "TRUST_X_FORWARDED_PROTO",
    "LOG_LEVEL",
}


def _secret(length: int) -> str:
    value = secrets.token_urlsafe(length)[:length]
    assert len(value) == length
    return value


def _env(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUB_NAMES and not key.startswith(_SCRUB_PREFIXES)
    }
    env["READ_DOT_ENV"] = "0"
    env.update(overrides)
    return env


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
    return _env(**values)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The timeout only guards against a hung child; nothing here asserts on duration.
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _check(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return _run(["manage.py", "check", *extra], env)


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
    return _run(["-c", _RESOLVE_SANDBOX], env)


# --- secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret_key",
    [None, DEV_SECRET, "x" * 49, "k" * 10],
    ids=["missing", "default", "short-49", "short-10"],
)
def test_production_refuses_unsafe_secret_key(tmp_path, secret_key):
    env = _production(tmp_path)
    if secret_key is None:
        del env["SECRET_KEY"]
    else:
        env["SECRET_KEY"] = secret_key
    result = _check(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert _names_secret_key(result.stderr), result.stderr


def test_secret_key_of_exactly_fifty_characters_is_accepted(tmp_path):
    result = _check(_production(tmp_path, SECRET_KEY=_secret(50)))
    assert result.returncode == 0, result.stderr


def _jwt_case(case: str, env: dict[str, str]) -> None:
    if case == "missing":
        del env["JWT_SECRET_KEY"]
    elif case == "default":
        env["JWT_SECRET_KEY"] = DEV_JWT_SECRET
    elif case == "short":
        env["JWT_SECRET_KEY"] = _secret(31)
    elif case == "equal":
        env["JWT_SECRET_KEY"] = env["SECRET_KEY"]


@pytest.mark.parametrize("case", ["missing", "default", "short", "equal"])
def test_production_refuses_unsafe_jwt_secret_key(tmp_path, case):
    env = _production(tmp_path)
    _jwt_case(case, env)
    result = _check(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "JWT_SECRET_KEY" in result.stderr, result.stderr


def test_debug_tolerates_the_development_secrets(tmp_path):
    env = _env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}")
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
    env = _env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}")
    resolved = _resolve_sandbox(env)
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.split() == ["MOUNTED", "/sandbox/", "True"]


def test_production_needs_an_https_public_base_url(tmp_path):
    result = _check(_production(tmp_path, PUBLIC_BASE_URL="http://api.example.com"))
    assert result.returncode != 0
    assert "PUBLIC_BASE_URL" in result.stderr


def test_real_credentials_refuse_the_dev_secrets_even_with_debug(tmp_path):
    env = _env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}", WECHATPAY_MCH_ID="1900000001")
    result = _check(env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_sandbox_next_to_a_real_merchant_in_production_is_refused(tmp_path):
    result = _check(_production(tmp_path, SANDBOX="1", WECHATPAY_MCH_ID="1900000001"))
    assert result.returncode != 0
    assert "WECHATPAY_MCH_ID" in result.stderr

"""wechatLogin's rows: first login, returning login, a unionid another app knows, races."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client
from django.utils import timezone

from accounts.models import RefreshToken, User, WechatIdentity, hash_refresh_token
from providers.sandbox.wechat import openid_for, unionid_for
from tests.helpers import LOGIN, GraphQLClient

APPID = settings.WECHAT_MINIPROGRAM_APPID
JOIN_TIMEOUT = 30


def test_first_then_returning_login_rows(gql, wechat_sandbox):
    started = timezone.now()
    first = gql.login("carol")
    user = User.objects.get(pk=first["user"]["id"])
    identity = WechatIdentity.objects.get(user=user)
    assert first["created"] is True
    assert user.username.startswith("wx_") and not user.has_usable_password()
    assert user.is_active and not user.is_staff and not user.is_superuser
    assert user.last_login is not None and user.last_login >= started and user.date_joined >= started
    assert (identity.appid, identity.openid, identity.unionid, identity.kind) == (
        APPID,
        openid_for(APPID, "carol"),
        unionid_for("carol"),
        "miniprogram",
    )
    assert identity.session_key == wechat_sandbox.session_key(APPID, identity.openid)
    assert identity.last_login_at == identity.session_key_updated_at and identity.last_login_at >= started
    stored = RefreshToken.objects.get(user=user)
    assert stored.token == hash_refresh_token(first["refreshToken"]) and stored.revoked is None
    old_key = identity.session_key

    again = gql.login("carol:2")

    assert again["created"] is False and again["user"]["id"] == first["user"]["id"]
    identity.refresh_from_db()
    assert identity.session_key != old_key
    assert identity.session_key == wechat_sandbox.session_key(APPID, identity.openid)
    assert RefreshToken.objects.filter(user=user).count() == 2
    assert (User.objects.count(), WechatIdentity.objects.count()) == (1, 1)
    assert gql("{ me { openid } }")["data"]["me"]["openid"] == identity.openid


def test_a_new_user_has_the_defaults_create_user_gives(gql):
    made = User.objects.get(pk=gql.login("dora")["user"]["id"])
    probe = User.objects.create_user(username="probe")
    varying = {"id", "username", "password", "last_login", "date_joined"}
    for field in User._meta.concrete_fields:
        if field.attname not in varying:
            assert getattr(made, field.attname) == getattr(probe, field.attname), field.name
    # Unusable, and shaped as make_password(None) shapes it.
    assert not made.has_usable_password() and made.password[0] == probe.password[0]
    assert len(made.password) == len(probe.password) and made.password != probe.password


def test_a_unionid_known_from_another_app_is_the_same_user(gql):
    dave = User.objects.create_user(username="dave-from-the-official-account")
    WechatIdentity.objects.create(
        user=dave, appid="wx0fficial0account", openid="o-oa-dave", unionid=unionid_for("dave"), kind="official_account"
    )

    login = gql.login("dave")

    assert login["created"] is False and int(login["user"]["id"]) == dave.pk
    assert WechatIdentity.objects.filter(user=dave).count() == 2
    assert User.objects.count() == 1


def test_a_login_adds_a_unionid_the_identity_lacked(gql):
    gql.login("erin")
    WechatIdentity.objects.update(unionid="")
    gql.login("erin:2")
    assert WechatIdentity.objects.get().unionid == unionid_for("erin")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_logins_of_one_person_make_one_user():
    n = 8
    barrier = threading.Barrier(n)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def login(k: int) -> None:
        try:
            gql = GraphQLClient(Client())
            barrier.wait(timeout=JOIN_TIMEOUT)
            results.append(gql(LOGIN, {"code": f"fay:{k}"}))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=login, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads) and errors == []
    assert all("errors" not in r for r in results) and len(results) == n, results
    assert len({r["data"]["wechatLogin"]["user"]["id"] for r in results}) == 1
    assert sum(r["data"]["wechatLogin"]["created"] for r in results) == 1
    assert (User.objects.count(), WechatIdentity.objects.count(), RefreshToken.objects.count()) == (1, 1, n)

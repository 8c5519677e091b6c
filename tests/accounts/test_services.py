"""accounts.services: the rows wechat_login writes, and the refresh-token lifecycle.

Most cases drive the service through its mutation, as a client does: the rows are what they check.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.db import connection, connections, models
from django.db.models.options import Options
from django.test import Client
from django.utils import timezone
from django.utils.functional import cached_property

from accounts import services
from accounts.models import RefreshToken, User, WechatIdentity, hash_refresh_token
from core.errors import AppError, ErrorCode
from providers.sandbox.wechat import openid_for, unionid_for
from tests.factories import UserFactory, WechatIdentityFactory
from tests.helpers import LOGIN, REFRESH, GraphQLClient, error_code

APPID = settings.WECHAT_MINIPROGRAM_APPID
JOIN_TIMEOUT = 30
REVOKE = "mutation V($t: String!) { revokeToken(refreshToken: $t) { revoked } }"


def everything() -> tuple[list[dict[str, Any]], ...]:
    """Every column of every user, identity and refresh token."""
    return tuple(list(model.objects.order_by("pk").values()) for model in (User, WechatIdentity, RefreshToken))


def live_tokens() -> int:
    return RefreshToken.objects.filter(revoked__isnull=True).count()


# --- wechat_login -------------------------------------------------------------------------


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


def _user_columns() -> list[str]:
    with connection.cursor() as cursor:
        return [c.name for c in connection.introspection.get_table_description(cursor, User._meta.db_table)]


def _schema() -> tuple[list[str], list[str], dict[str, Any]]:
    """The tables, and the user table's columns and constraints: what the fixture below must restore."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, User._meta.db_table)
    return connection.introspection.table_names(), _user_columns(), constraints


def _drop_tables_not_in(tables: list[str]) -> None:
    # SQLite adds a column by rebuilding the table as "new__accounts_user", and with it creates the
    # many-to-many tables of AbstractUser's groups and permissions ("new__accounts_user_groups"),
    # which it leaves behind: the next rebuild would fail on them.
    with connection.schema_editor() as editor:
        for table in set(connection.introspection.table_names()) - set(tables):
            editor.execute(f"DROP TABLE {editor.quote_name(table)}")


def _forget_user_fields() -> None:
    # _expire_cache() leaves some of Options' cached properties (db_returning_fields among them): a
    # stale one would have every later insert return a column that is gone.
    User._meta._expire_cache()
    for name, attr in vars(Options).items():
        if isinstance(attr, cached_property):
            User._meta.__dict__.pop(name, None)


@pytest.fixture
def coupon_credits(transactional_db: Any) -> Iterator[str]:
    """accounts.User with one more concrete field, `coupon_credits = IntegerField(db_default=7)`, and
    its column, for the test's duration; the schema and the model are restored exactly afterwards.
    Schema changes need a test outside a transaction (SQLite rebuilds the table)."""
    schema, fields = _schema(), list(User._meta.local_fields)
    returning = list(User._meta.db_returning_fields)
    field = models.IntegerField(db_default=7)
    try:
        field.contribute_to_class(User, "coupon_credits")
        _forget_user_fields()
        with connection.schema_editor() as editor:
            editor.add_field(User, field)
        _drop_tables_not_in(schema[0])
        yield field.column
    finally:
        try:
            if field.column in _user_columns():
                with connection.schema_editor() as editor:
                    editor.remove_field(User, field)
            _drop_tables_not_in(schema[0])
        finally:
            if field in User._meta.local_fields:
                User._meta.local_fields.remove(field)
            if "coupon_credits" in vars(User):
                delattr(User, "coupon_credits")
            _forget_user_fields()
    assert _schema() == schema
    assert (User._meta.local_fields, list(User._meta.db_returning_fields)) == (fields, returning)


@pytest.mark.django_db(transaction=True)
def test_a_user_field_with_a_db_default_leaves_login_working(gql, coupon_credits):
    # Regression: adding a User field with db_default made every wechatLogin fail on PostgreSQL.
    login = gql.login("nina")
    assert login["created"] is True
    with connection.cursor() as cursor:
        table, column = connection.ops.quote_name(User._meta.db_table), connection.ops.quote_name(coupon_credits)
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [login["user"]["id"]])
        assert cursor.fetchall() == [(7,)]  # the database filled it in
    assert gql.login("nina:2")["created"] is False  # and a returning login too


def test_a_unionid_known_from_another_app_is_the_same_user(gql):
    dave = UserFactory(username="dave-from-the-official-account")
    WechatIdentityFactory(
        user=dave, appid="wx0fficial0account", openid="o-oa-dave", unionid=unionid_for("dave"), kind="official_account"
    )

    login = gql.login("dave")

    assert login["created"] is False and int(login["user"]["id"]) == dave.pk
    assert WechatIdentity.objects.filter(user=dave).count() == 2
    assert User.objects.count() == 1


def test_a_unionid_of_a_disabled_user_from_another_app_is_refused_and_nothing_changes(gql):
    # The same person, so the same disabled account: no fresh user beside it.
    WechatIdentityFactory(user=UserFactory(is_active=False), appid="wx0fficial0account", unionid=unionid_for("otto"))
    before = everything()
    assert error_code(gql(LOGIN, {"code": "otto"})) == "FORBIDDEN"
    assert everything() == before


def test_a_login_adds_a_unionid_the_identity_lacked(gql):
    gql.login("erin")
    WechatIdentity.objects.update(unionid="")
    gql.login("erin:2")
    assert WechatIdentity.objects.get().unionid == unionid_for("erin")


def test_a_disabled_user_is_refused_and_nothing_changes(gql):
    gql.login("hank")
    User.objects.update(is_active=False)
    before = everything()
    assert error_code(gql(LOGIN, {"code": "hank:2"})) == "FORBIDDEN"
    # No refresh token, and the old session_key kept.
    assert everything() == before


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


# --- tokens: issue, refresh (rotation), revoke --------------------------------------------


def test_access_token_lives_ten_minutes(gql):
    token = gql.login("alice")["token"]
    payload = jwt.decode(token, settings.GRAPHQL_JWT["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert 590 <= payload["exp"] - time.time() <= 600


def test_refresh_tokens_are_stored_as_digests(gql):
    raw = gql.login("alice")["refreshToken"]
    assert not RefreshToken.objects.filter(token=raw).exists()
    assert RefreshToken.objects.filter(token=hash_refresh_token(raw)).exists()


def test_refresh_rotates(gql):
    old = gql.login("alice")["refreshToken"]
    result = gql(REFRESH, {"t": old})["data"]["refreshToken"]
    assert result["refreshToken"] != old
    assert result["token"]
    gql.token = result["token"]
    assert gql("{ me { id } }")["data"]["me"]["id"]
    assert RefreshToken.objects.get(token=hash_refresh_token(old)).revoked is not None
    assert live_tokens() == 1


def rotated_long_ago(raw: str) -> None:
    """Moves a rotated token's rotation past the reuse interval: presenting it now is reuse."""
    seconds = settings.JWT_REFRESH_REUSE_SECONDS + 1
    RefreshToken.objects.filter(token=hash_refresh_token(raw)).update(
        revoked=timezone.now() - dt.timedelta(seconds=seconds)
    )


def test_reusing_a_rotated_token_revokes_the_whole_family(gql):
    old = gql.login("alice")["refreshToken"]
    new = gql(REFRESH, {"t": old})["data"]["refreshToken"]["refreshToken"]
    gql.login("alice:2")  # a second device of the same user
    assert live_tokens() == 2
    rotated_long_ago(old)
    result = gql(REFRESH, {"t": old})
    assert error_code(result) == "UNAUTHENTICATED"
    assert live_tokens() == 0
    # The token issued by the legitimate rotation is dead too.
    assert error_code(gql(REFRESH, {"t": new})) == "UNAUTHENTICATED"


def test_reuse_only_revokes_that_user(gql):
    old = gql.login("alice")["refreshToken"]
    gql(REFRESH, {"t": old})
    gql.login("bob")
    rotated_long_ago(old)
    gql(REFRESH, {"t": old})
    bob = User.objects.get(wechat_identities__openid__isnull=False, refresh_tokens__revoked__isnull=True)
    assert RefreshToken.objects.filter(user=bob, revoked__isnull=True).count() == 1


def test_a_token_presented_again_within_the_reuse_interval_gets_a_fresh_pair(gql):
    old = gql.login("alice")["refreshToken"]
    first = gql(REFRESH, {"t": old})["data"]["refreshToken"]
    again = gql(REFRESH, {"t": old})["data"]["refreshToken"]
    assert again["refreshToken"] not in (old, first["refreshToken"]) and again["token"]
    # Both new sessions live on; nothing was revoked but the rotated token.
    assert live_tokens() == 2
    assert gql(REFRESH, {"t": first["refreshToken"]})["data"]["refreshToken"]["refreshToken"]


def test_within_the_reuse_interval_a_signed_out_session_is_not_brought_back(gql):
    old = gql.login("alice")["refreshToken"]
    new = gql(REFRESH, {"t": old})["data"]["refreshToken"]["refreshToken"]
    tablet = gql.login("alice:2")["refreshToken"]
    gql(REVOKE, {"t": new})  # the client signed out
    result = gql(REFRESH, {"t": old})
    assert error_code(result) == "UNAUTHENTICATED" and "already used" in result["errors"][0]["message"]
    # Only refused: the other device is still signed in.
    assert live_tokens() == 1 and gql(REFRESH, {"t": tablet})["data"]["refreshToken"]


def test_revoke_acts_at_once(gql):
    token = gql.login("alice")["refreshToken"]
    assert gql(REVOKE, {"t": token})["data"]["revokeToken"]["revoked"] is True
    assert error_code(gql(REFRESH, {"t": token})) == "UNAUTHENTICATED"
    assert RefreshToken.objects.count() == 1  # the refused refresh issued nothing
    # Revoking twice is fine.
    assert gql(REVOKE, {"t": token})["data"]["revokeToken"]["revoked"] is True


def test_a_signed_out_token_presented_again_signs_out_no_other_device(gql):
    # A client retrying its refresh after signing out is not a thief: only a rotated token's
    # reuse revokes the family.
    phone = gql.login("alice")["refreshToken"]
    tablet = gql.login("alice:2")["refreshToken"]
    gql(REVOKE, {"t": phone})
    result = gql(REFRESH, {"t": phone})
    assert error_code(result) == "UNAUTHENTICATED"
    assert "revoked" in result["errors"][0]["message"]
    assert live_tokens() == 1
    assert gql(REFRESH, {"t": tablet})["data"]["refreshToken"]["refreshToken"]


def test_rotation_marks_the_old_token_rotated_and_revocation_does_not(gql):
    rotated = gql.login("alice")["refreshToken"]
    gql(REFRESH, {"t": rotated})
    signed_out = gql.login("bob")["refreshToken"]
    gql(REVOKE, {"t": signed_out})
    assert RefreshToken.objects.get(token=hash_refresh_token(rotated)).rotated is True
    assert RefreshToken.objects.get(token=hash_refresh_token(signed_out)).rotated is False


@pytest.mark.parametrize("mutation", [REFRESH, REVOKE])
def test_unknown_refresh_token(gql, mutation):
    gql.login("alice")
    assert error_code(gql(mutation, {"t": "0" * 64})) == "UNAUTHENTICATED"
    assert live_tokens() == 1


def test_expired_refresh_token(gql):
    token = gql.login("alice")["refreshToken"]
    RefreshToken.objects.update(created="2000-01-01T00:00:00Z")
    assert error_code(gql(REFRESH, {"t": token})) == "UNAUTHENTICATED"
    assert live_tokens() == 1  # an expired token is refused, not treated as theft


def test_a_disabled_users_refresh_is_refused_and_nothing_changes(gql):
    token = gql.login("alice")["refreshToken"]
    User.objects.update(is_active=False)
    before = everything()
    assert error_code(gql(REFRESH, {"t": token})) == "UNAUTHENTICATED"
    assert everything() == before  # refused, neither rotated nor taken for theft


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_refreshes_of_one_token_all_succeed_and_the_user_stays_signed_in():
    # A mini-program firing parallel requests after a 401: each refreshes with the same token.
    user = UserFactory(username="wx_concurrent")
    raw = services.issue_tokens(user).refresh_token
    barrier = threading.Barrier(10)
    outcomes = []
    lock = threading.Lock()

    def refresh():
        try:
            barrier.wait()
            try:
                pair = services.refresh_tokens(refresh_token=raw)
                outcome = "ok" if pair.token and pair.refresh_token else "empty"
            except AppError as exc:
                outcome = exc.code
            with lock:
                outcomes.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=refresh) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The row lock lets the first rotate; the other nine, within the reuse interval, get fresh pairs.
    assert outcomes == ["ok"] * 10
    assert RefreshToken.objects.filter(user=user, rotated=True).count() == 1
    assert RefreshToken.objects.filter(user=user, revoked__isnull=True).count() == 10
    # After the interval, the same token is reuse: every session is signed out.
    rotated_long_ago(raw)
    with pytest.raises(AppError) as refused:
        services.refresh_tokens(refresh_token=raw)
    assert refused.value.code == ErrorCode.UNAUTHENTICATED
    assert RefreshToken.objects.filter(user=user, revoked__isnull=True).count() == 0

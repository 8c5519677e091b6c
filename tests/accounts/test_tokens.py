"""Refresh tokens: rotation, reuse detection, revocation, and concurrent refreshes."""

import threading

import pytest
from django.db import connection

from accounts import services
from accounts.models import RefreshToken, User, hash_refresh_token
from core.errors import AppError, ErrorCode
from tests.helpers import error_code

REFRESH = "mutation R($t: String!) { refreshToken(refreshToken: $t) { token refreshToken } }"
REVOKE = "mutation V($t: String!) { revokeToken(refreshToken: $t) { revoked } }"


def live_tokens():
    return RefreshToken.objects.filter(revoked__isnull=True).count()


def test_refresh_rotates(gql):
    old = gql.login("alice")["refreshToken"]
    result = gql(REFRESH, {"t": old})["data"]["refreshToken"]
    assert result["refreshToken"] != old
    assert result["token"]
    gql.token = result["token"]
    assert gql("{ me { id } }")["data"]["me"]["id"]
    assert RefreshToken.objects.get(token=hash_refresh_token(old)).revoked is not None
    assert live_tokens() == 1


def test_refresh_tokens_are_stored_as_digests(gql):
    raw = gql.login("alice")["refreshToken"]
    assert not RefreshToken.objects.filter(token=raw).exists()
    assert RefreshToken.objects.filter(token=hash_refresh_token(raw)).exists()


def test_reusing_a_rotated_token_revokes_the_whole_family(gql):
    old = gql.login("alice")["refreshToken"]
    new = gql(REFRESH, {"t": old})["data"]["refreshToken"]["refreshToken"]
    gql.login("alice:2")  # a second device of the same user
    assert live_tokens() == 2
    result = gql(REFRESH, {"t": old})
    assert error_code(result) == "UNAUTHENTICATED"
    assert live_tokens() == 0
    # The token issued by the legitimate rotation is dead too.
    assert error_code(gql(REFRESH, {"t": new})) == "UNAUTHENTICATED"


def test_reuse_only_revokes_that_user(gql):
    old = gql.login("alice")["refreshToken"]
    gql(REFRESH, {"t": old})
    gql.login("bob")
    gql(REFRESH, {"t": old})
    bob = User.objects.get(wechat_identities__openid__isnull=False, refresh_tokens__revoked__isnull=True)
    assert RefreshToken.objects.filter(user=bob, revoked__isnull=True).count() == 1


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


def test_expired_refresh_token(gql, settings):
    token = gql.login("alice")["refreshToken"]
    RefreshToken.objects.update(created="2000-01-01T00:00:00Z")
    assert error_code(gql(REFRESH, {"t": token})) == "UNAUTHENTICATED"
    assert live_tokens() == 1  # an expired token is refused, not treated as theft


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_exactly_one_succeeds():
    user = User.objects.create(username="wx_concurrent")
    raw = services.issue_tokens(user).refresh_token
    barrier = threading.Barrier(10)
    outcomes = []
    lock = threading.Lock()

    def refresh():
        try:
            barrier.wait()
            try:
                services.refresh_tokens(refresh_token=raw)
                outcome = "ok"
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
    assert len(outcomes) == 10
    # The row lock lets the first rotate; the other nine then see a rotated token.
    assert outcomes.count("ok") == 1
    assert outcomes.count(ErrorCode.UNAUTHENTICATED) == 9
    # Whoever lost saw reuse, so no refresh token of the user is left alive, the winner's new one included.
    assert RefreshToken.objects.filter(user=user).count() == 2
    assert RefreshToken.objects.filter(user=user, revoked__isnull=True).count() == 0

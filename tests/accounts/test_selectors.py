"""accounts.selectors: the user a JWT names, and a user's WeChat ids, each in the queries it promises."""

from __future__ import annotations

import pytest

from accounts import selectors
from accounts.models import User
from config import providers
from tests.factories import UserFactory, WechatIdentityFactory

pytestmark = pytest.mark.django_db

OTHER_APP = "wx0fficial0account"


def wechat_user(username: str) -> User:
    # No password, as wechatLogin makes them (and no ~0.4 s hash per user).
    return UserFactory(username=username)


@pytest.fixture
def ida():
    """A user known in the mini-program and in another app of ours."""
    user = wechat_user("ida")
    WechatIdentityFactory(user=user, appid=OTHER_APP, openid="o-oa-ida", unionid="u-ida", kind="official_account")
    WechatIdentityFactory(user=user, openid="o-mp-ida", unionid="u-ida")
    return user


def test_active_user_for_token_reads_the_user_and_their_ids_in_one_query(ida, django_assert_num_queries):
    with django_assert_num_queries(1):
        user = selectors.active_user_for_token("ida")
    assert user == ida
    # The mini-program's ids, not the other app's, and they were read with the user.
    with django_assert_num_queries(0):
        assert selectors.miniprogram_ids(user) == ("o-mp-ida", "u-ida")


def test_active_user_for_token_of_a_user_without_a_miniprogram_identity(django_assert_num_queries):
    # A staff member, or someone known only from another app, is still the user; their ids are None.
    WechatIdentityFactory(user=wechat_user("oa-only"), appid=OTHER_APP, unionid="u-oa")
    with django_assert_num_queries(1):
        user = selectors.active_user_for_token("oa-only")
    assert user is not None and user.username == "oa-only"
    with django_assert_num_queries(0):
        assert selectors.miniprogram_ids(user) == (None, None)


def test_active_user_for_token_names_only_active_users(ida):
    assert selectors.active_user_for_token("nobody") is None
    User.objects.filter(pk=ida.pk).update(is_active=False)
    assert selectors.active_user_for_token("ida") is None


def test_miniprogram_ids_of_a_user_from_elsewhere_is_one_query_once(ida, django_assert_num_queries):
    user = User.objects.get(pk=ida.pk)  # as the admin or a service would load them
    with django_assert_num_queries(1):
        assert selectors.miniprogram_ids(user) == ("o-mp-ida", "u-ida")
    with django_assert_num_queries(0):  # kept on the instance
        assert selectors.miniprogram_ids(user) == ("o-mp-ida", "u-ida")


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        (None, (None, None)),
        ({"openid": "o-mp-jo", "unionid": ""}, ("o-mp-jo", None)),
        ({"appid": OTHER_APP, "openid": "o-oa-jo", "unionid": "u-jo"}, (None, None)),
    ],
    ids=["no identity", "no unionid", "only another app"],
)
def test_miniprogram_ids_answers_none_for_what_is_missing(identity, expected, django_assert_num_queries):
    user = wechat_user("jo")
    if identity:
        WechatIdentityFactory(user=user, **identity)
    user = User.objects.get(pk=user.pk)
    with django_assert_num_queries(1):
        assert selectors.miniprogram_ids(user) == expected


def test_openid_in_answers_the_openid_of_that_app(ida):
    assert selectors.openid_in(ida, providers.miniprogram_appid()) == "o-mp-ida"
    assert selectors.openid_in(ida, OTHER_APP) == "o-oa-ida"
    assert selectors.openid_in(ida, "wxnever") == ""


def test_openid_in_of_an_unsaved_user_asks_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert selectors.openid_in(User(username="draft"), providers.miniprogram_appid()) == ""

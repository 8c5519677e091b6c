"""The admin: every model is in it, the accounts pages answer and never show a session_key."""

import base64

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from accounts.models import RefreshToken
from tests.factories import UserFactory, WechatIdentityFactory

# Valid base64 of 16 bytes, like a real one, and distinctive enough to be found anywhere.
SESSION_KEY = "SeCrEtSeSsIoNkEy7f3c9a=="
OPENID = "o-admin-test-openid-0001"
USERNAME = "wx_admin_test"
OUR_APPS = ("accounts", "payments", "notifications")


def _url(name, *args, query=""):
    return lambda identity: reverse(f"admin:accounts_{name}", args=[arg(identity) for arg in args]) + query


def _user(identity):
    return identity.user_id


def _identity(identity):
    return identity.pk


def _token(identity):
    return RefreshToken.objects.get(user=identity.user).pk


# page: (its url from the identity, a string showing the page rendered that identity's rows, if it should)
PAGES = {
    "user list": (_url("user_changelist"), USERNAME),
    "user search by openid": (_url("user_changelist", query=f"?q={OPENID}"), USERNAME),
    "user change": (_url("user_change", _user), OPENID),  # the identity inline
    "user add": (_url("user_add"), None),
    "user delete": (_url("user_delete", _user), OPENID),  # lists the related rows
    "user history": (_url("user_history", _user), USERNAME),
    "identity list": (_url("wechatidentity_changelist"), OPENID),
    "identity search by openid": (_url("wechatidentity_changelist", query=f"?q={OPENID}"), OPENID),
    "identity change": (_url("wechatidentity_change", _identity), OPENID),
    "identity add": (_url("wechatidentity_add"), None),
    "identity delete": (_url("wechatidentity_delete", _identity), OPENID),
    "identity history": (_url("wechatidentity_history", _identity), OPENID),
    "refresh token list": (_url("refreshtoken_changelist"), USERNAME),
    "refresh token change": (_url("refreshtoken_change", _token), USERNAME),
}


@pytest.fixture
def identity(db):
    # No password, as wechatLogin makes them (and no ~0.4 s hash per user).
    user = UserFactory(username=USERNAME, nickname="Alice")
    identity = WechatIdentityFactory(
        user=user,
        openid=OPENID,
        unionid="u-admin-test",
        session_key=SESSION_KEY,
        session_key_updated_at=timezone.now(),
        last_login_at=timezone.now(),
    )
    RefreshToken.objects.create(user=user)
    # Another user, so a search that finds everything is told apart from one that finds the row.
    WechatIdentityFactory(user=UserFactory(username="wx_admin_other"), openid="o-other", session_key="x")
    return identity


def test_every_model_of_ours_is_in_the_admin(admin_client):
    ours = [model for model in apps.get_models() if model._meta.app_label in OUR_APPS]
    assert {model._meta.app_label for model in ours} >= {"accounts", "payments"}
    assert [model._meta.label for model in ours if not admin.site.is_registered(model)] == []
    for model in ours:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, model._meta.label


@pytest.mark.parametrize("page", sorted(PAGES))
def test_admin_page_answers_without_the_session_key(admin_client, identity, page):
    url, marker = PAGES[page]
    response = admin_client.get(url(identity))
    assert response.status_code == 200
    html = response.content.decode()
    if marker:  # the page did render the rows, so the key's absence means something
        assert marker in html
    assert SESSION_KEY not in html
    assert base64.b64decode(SESSION_KEY).hex() not in html


@pytest.mark.parametrize("model", ["user", "wechatidentity"])
def test_admin_search_by_openid_finds_only_that_row(admin_client, identity, model):
    response = admin_client.get(reverse(f"admin:accounts_{model}_changelist"), {"q": OPENID})
    expected = identity.user if model == "user" else identity
    assert list(response.context["cl"].result_list) == [expected]


@pytest.mark.parametrize("model", ["user", "wechatidentity"])
def test_admin_search_cannot_probe_the_session_key(admin_client, identity, model):
    """A search that matched the key would confirm guesses of it, one search at a time."""
    response = admin_client.get(reverse(f"admin:accounts_{model}_changelist"), {"q": SESSION_KEY})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []


def test_saving_an_identity_in_the_admin_keeps_its_session_key(admin_client, identity):
    url = reverse("admin:accounts_wechatidentity_change", args=[identity.pk])
    form = {
        "user": identity.user_id,
        "kind": identity.kind,
        "appid": identity.appid,
        "openid": identity.openid,
        "unionid": "u-edited",
        "last_login_at_0": "",
        "last_login_at_1": "",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    identity.refresh_from_db()
    assert identity.unionid == "u-edited"  # the form was saved...
    assert identity.session_key == SESSION_KEY  # ...without blanking the key it never showed


def test_refresh_tokens_are_issued_by_logins_only_and_revoked_by_the_action(admin_client, identity):
    assert admin_client.get(reverse("admin:accounts_refreshtoken_add")).status_code == 403
    token = RefreshToken.objects.get(user=identity.user)
    page = admin_client.get(reverse("admin:accounts_refreshtoken_change", args=[token.pk])).content.decode()
    assert 'name="user"' not in page and 'name="revoked_0"' not in page  # shown, not editable
    response = admin_client.post(
        reverse("admin:accounts_refreshtoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked is not None and token.rotated is False

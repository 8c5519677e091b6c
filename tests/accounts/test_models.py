"""accounts.models: what the database itself guarantees."""

import pytest
from django.db import IntegrityError

from tests.factories import WechatIdentityFactory


def test_a_user_has_one_identity_per_app(db):
    # The request user's selector reads "the identity of this user in the mini-program" with get().
    identity = WechatIdentityFactory()
    with pytest.raises(IntegrityError):
        WechatIdentityFactory(user=identity.user, appid=identity.appid)


def test_an_openid_belongs_to_one_identity_per_app(db):
    identity = WechatIdentityFactory()
    with pytest.raises(IntegrityError):
        WechatIdentityFactory(openid=identity.openid, appid=identity.appid)

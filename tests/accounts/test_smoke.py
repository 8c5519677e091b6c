from tests.conftest import error_code


def test_login_and_me(gql):
    login = gql.login("alice")
    assert login["created"] is True
    me = gql("{ me { id openid nickname } }")
    assert me["data"]["me"]["openid"] == login["user"]["openid"]


def test_me_anonymous(gql):
    assert error_code(gql("{ me { id } }")) == "UNAUTHENTICATED"

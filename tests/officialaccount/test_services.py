"""officialaccount.services: the bind hook's contract, keyword matching, followers' state and their unionid."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError

from accounts.models import WechatIdentity
from accounts.services import BIND_SCENE_PREFIX, bind_scene_key, wechat_login
from config import providers
from officialaccount import services
from officialaccount.models import Follower, KeywordReply
from providers.http import ProviderError, ProviderUnavailable
from providers.sandbox.wechat import unionid_for
from providers.wechat.official_account import FollowerInfo, OfficialAccountClient
from tests.factories import UserFactory, WechatIdentityFactory
from tests.officialaccount.conftest import APPID, event_message, sandbox_openid

pytestmark = pytest.mark.django_db

OPENID = "o-follower-services-000001"


def identities() -> list[tuple[Any, ...]]:
    return list(WechatIdentity.objects.order_by("pk").values_list("user_id", "appid", "openid", "kind", "unionid"))


# --- bind_by_scene ------------------------------------------------------------------------------

CONFLICT = "This WeChat account belongs to someone else: bind your own."
SCENE = BIND_SCENE_PREFIX + "0123456789abcdef"


def bind_code(user_id: Any, scene: str = SCENE) -> str:
    """A bind QR code's scene, its user in the cache as officialAccountBindQrCode leaves them."""
    cache.set(bind_scene_key(scene), user_id, 600)
    return scene


def test_bind_by_scene_binds_the_user_in_the_cache(oa):
    user = UserFactory()
    scene = bind_code(user.pk)
    openid = sandbox_openid("pia")
    assert services.bind_by_scene(scene, APPID, openid, "") == services.BOUND
    # Who scanned, asked of WeChat (cgi-bin/user/info) before binding: their unionid is kept.
    assert identities() == [(user.pk, APPID, openid, WechatIdentity.Kind.OFFICIAL_ACCOUNT, unionid_for("pia"))]
    # The same follower again (another scan): the same answer, nothing more.
    assert services.bind_by_scene(scene, APPID, openid, "") == services.BOUND
    assert len(identities()) == 1


def test_bind_by_scene_keeps_a_known_unionid_without_asking_wechat(oa, monkeypatch):
    fake = FakeUserInfo(monkeypatch, _info("union-other"))
    user = UserFactory()
    scene = bind_code(user.pk)
    assert services.bind_by_scene(scene, APPID, OPENID, "union-1") == services.BOUND
    assert identities()[0][4] == "union-1"
    assert fake.calls == []


@pytest.mark.parametrize("scene", ["", "missing", BIND_SCENE_PREFIX + "x" * 61, BIND_SCENE_PREFIX + "gone"])
def test_bind_by_scene_unknown_scene_is_none(oa, scene):
    assert services.bind_by_scene(scene, APPID, OPENID, "") is None
    assert identities() == []


@pytest.mark.parametrize("scene", ["s1", "campaign42", "42", "Bind0123", "x" + BIND_SCENE_PREFIX])
def test_a_scene_without_the_bind_prefix_is_no_bind(oa, scene):
    # Even with a user under its key: another kind of scene code (a campaign's) binds nobody.
    bind_code(UserFactory().pk, scene)
    assert services.bind_by_scene(scene, APPID, sandbox_openid("pia"), "") is None
    assert identities() == []
    assert cache.get(f"{bind_scene_key(scene)}:openid") is None  # nor claims the code


def test_bind_by_scene_of_another_account_is_none(oa):
    scene = bind_code(UserFactory().pk)
    assert services.bind_by_scene(scene, "wxanotheraccount01", sandbox_openid("pia"), "") is None
    assert identities() == []


def test_a_code_binds_one_follower_only(oa):
    user = UserFactory()
    scene = bind_code(user.pk)
    openid = sandbox_openid("pia")
    assert services.bind_by_scene(scene, APPID, openid, "") == services.BOUND
    # Someone else who saw the code on the screen cannot bind their WeChat to that account.
    assert services.bind_by_scene(scene, APPID, sandbox_openid("mallory"), "") == services.SCENE_USED
    assert identities() == [(user.pk, APPID, openid, WechatIdentity.Kind.OFFICIAL_ACCOUNT, unionid_for("pia"))]


def test_an_openid_bound_to_someone_else_changes_nothing_and_leaves_the_code_usable(oa):
    owner, asker = UserFactory(), UserFactory()
    openid = sandbox_openid("pia")
    WechatIdentityFactory(user=owner, appid=APPID, openid=openid, kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT)
    scene = bind_code(asker.pk)
    before = identities()
    assert services.bind_by_scene(scene, APPID, openid, "") == "This WeChat account is already bound to another user."
    assert identities() == before
    # The follower the code was meant for can still use it.
    theirs = sandbox_openid("asker")
    assert services.bind_by_scene(scene, APPID, theirs, "") == services.BOUND
    assert WechatIdentity.objects.get(appid=APPID, openid=theirs).user == asker


def test_a_user_bound_to_another_follower_is_told_so(oa):
    user = UserFactory()
    WechatIdentityFactory(
        user=user, appid=APPID, openid="o-their-old-wechat", kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT
    )
    scene = bind_code(user.pk)
    before = identities()
    assert services.bind_by_scene(scene, APPID, sandbox_openid("pia"), "") == (
        "Your account is already bound to another official-account user."
    )
    assert identities() == before


@pytest.mark.parametrize("value", ["not-a-number", 10**9, None])
def test_a_gone_or_disabled_user_is_an_expired_code(oa, value):
    user = UserFactory(is_active=False)
    scene = bind_code(value if value is not None else user.pk)
    assert services.bind_by_scene(scene, APPID, sandbox_openid("pia"), "") == services.SCENE_EXPIRED
    assert identities() == []


@pytest.mark.parametrize("unionid", ["", "from-the-follower"], ids=["asked", "known"])
def test_a_scanner_whom_wechat_names_another_person_is_refused_and_the_code_stays_usable(oa, unionid):
    user = wechat_login(code="pia").user  # pia logged in to the mini-program: their unionid is known
    scene = bind_code(user.pk)
    onlooker = sandbox_openid("mallory")  # mallory scans the code on pia's screen
    before = identities()
    known = unionid_for("mallory") if unionid else ""  # the follower's unionid, fetched earlier, or not yet
    assert services.bind_by_scene(scene, APPID, onlooker, known) == CONFLICT
    assert identities() == before
    # pia, the person the code was made for, binds with it.
    openid = sandbox_openid("pia")
    assert services.bind_by_scene(scene, APPID, openid, "") == services.BOUND
    assert identities()[-1] == (user.pk, APPID, openid, WechatIdentity.Kind.OFFICIAL_ACCOUNT, unionid_for("pia"))


def test_the_person_who_logged_in_binds_with_their_own_wechat(oa):
    user = wechat_login(code="pia").user
    scene = bind_code(user.pk)
    openid = sandbox_openid("pia")
    assert services.bind_by_scene(scene, APPID, openid, "") == services.BOUND
    assert {identity.unionid for identity in user.wechat_identities.all()} == {unionid_for("pia")}


@pytest.mark.parametrize(
    "failure",
    [ProviderUnavailable("wechat", "read timed out"), ProviderError("wechat", -1, "system error")],
    ids=["unavailable", "error"],
)
def test_wechat_failing_to_say_who_scanned_binds_nothing_and_the_code_stays_usable(oa, monkeypatch, failure):
    user = wechat_login(code="pia").user
    scene = bind_code(user.pk)
    openid = sandbox_openid("pia")
    client = providers.official_account()
    real = client.user_info
    calls: list[str] = []

    def failing(openid: str, lang: str = "zh_CN") -> FollowerInfo:
        calls.append(openid)
        raise failure

    monkeypatch.setattr(client, "user_info", failing)
    before = identities()
    assert services.bind_by_scene(scene, APPID, openid, "") == services.BIND_RETRY
    assert calls == [openid]
    assert identities() == before
    # The failed scan released the code: the next scanner is judged afresh (not told the code was used).
    monkeypatch.setattr(client, "user_info", real)
    assert services.bind_by_scene(scene, APPID, sandbox_openid("mallory"), "") == CONFLICT
    # WeChat answering again: the scan binds.
    assert services.bind_by_scene(scene, APPID, openid, "") == services.BOUND
    assert identities()[-1] == (user.pk, APPID, openid, WechatIdentity.Kind.OFFICIAL_ACCOUNT, unionid_for("pia"))


# --- keyword replies ----------------------------------------------------------------------------


def _reply_to_text(text: str) -> str:
    message = {"MsgType": "text", "FromUserName": OPENID, "ToUserName": "gh", "Content": text, "MsgId": "1"}
    xml = services.route(appid=APPID, message=message)
    return xml.split("<Content><![CDATA[", 1)[1].split("]]></Content>", 1)[0]


def test_exact_beats_contains_then_priority_then_age(oa):
    KeywordReply.objects.create(keyword="price", match="contains", content="contains", priority=100)
    KeywordReply.objects.create(keyword="Price list", content="exact low", priority=0)
    KeywordReply.objects.create(keyword="price list", content="exact high", priority=5)
    KeywordReply.objects.create(keyword="PRICE LIST", content="exact high later", priority=5)
    assert _reply_to_text(" price LIST ") == "exact high"
    assert _reply_to_text("what is the price?") == "contains"


def test_inactive_replies_and_other_matches_are_ignored(oa):
    KeywordReply.objects.create(keyword="hello", content="off", active=False)
    KeywordReply.objects.create(keyword="hello", match="click", content="a menu key")
    assert _reply_to_text("hello") == services.DEFAULT_REPLY


def test_like_wildcards_in_a_keyword_are_literal(oa):
    KeywordReply.objects.create(keyword="50%_off", match="contains", content="sale")
    assert _reply_to_text("is it 50%_off today") == "sale"
    assert _reply_to_text("is it 50 percent off") == services.DEFAULT_REPLY
    assert _reply_to_text("50%xoff") == services.DEFAULT_REPLY


def test_the_default_reply_from_the_admin(oa):
    KeywordReply.objects.create(match="default", content="Our own default")
    KeywordReply.objects.create(keyword="hi", content="hi there")
    assert _reply_to_text("something") == "Our own default"
    assert _reply_to_text("hi") == "hi there"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"keyword": "", "content": "x"}, "keyword"),
        ({"keyword": "k", "content": " "}, "content"),
        ({"keyword": "k", "content": "字" * 683}, "content"),  # 2049 bytes
        ({"keyword": "k", "content": "bell\x07"}, "content"),
        ({"keyword": "k", "reply_type": "image"}, "media_id"),
        ({"keyword": "k", "reply_type": "news", "articles": []}, "articles"),
        ({"keyword": "k", "reply_type": "news", "articles": [{"title": "t"}] * 9}, "articles"),
        ({"keyword": "k", "reply_type": "news", "articles": [{"description": "no title"}]}, "articles"),
        (
            {"keyword": "k", "reply_type": "news", "articles": [{"title": "t", "url": "javascript:alert(1)"}]},
            "articles",
        ),
        ({"keyword": "k", "reply_type": "news", "articles": [{"title": "t", "extra": "x"}]}, "articles"),
    ],
)
def test_keyword_reply_validation(fields, field):
    with pytest.raises(ValidationError) as caught:
        KeywordReply(**fields).full_clean()
    assert list(caught.value.message_dict) == [field]


def test_welcome_and_default_need_no_keyword():
    KeywordReply(match="subscribe", content="hi").full_clean()
    KeywordReply(match="default", content="hi").full_clean()


# --- followers ----------------------------------------------------------------------------------


def _event(event: str, at: int) -> dict[str, str]:
    return {"MsgType": "event", "Event": event, "FromUserName": OPENID, "ToUserName": "gh", "CreateTime": str(at)}


def test_events_out_of_order_keep_the_latest_state(oa):
    services.route(appid=APPID, message=_event("subscribe", 1700000000))
    services.route(appid=APPID, message=_event("unsubscribe", 1700000200))
    services.route(appid=APPID, message=_event("subscribe", 1700000100))  # delayed, older
    follower = Follower.objects.get()
    assert follower.subscribed is False
    assert follower.subscribed_at == dt.datetime.fromtimestamp(1700000000, tz=dt.UTC)
    services.route(appid=APPID, message=_event("subscribe", 1700000300))
    follower.refresh_from_db()
    assert follower.subscribed is True and follower.subscribed_at.timestamp() == 1700000300


def test_an_unsubscribe_of_someone_never_seen_is_recorded(oa):
    assert services.route(appid=APPID, message=_event("unsubscribe", 1700000000)) == services.SUCCESS
    follower = Follower.objects.get()
    assert follower.subscribed is False and follower.unsubscribed_at.timestamp() == 1700000000


class FakeUserInfo:
    """cgi-bin/user/info's answer, in place of the client's call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, info: FollowerInfo | Exception) -> None:
        self.info = info
        self.calls: list[str] = []
        monkeypatch.setattr(OfficialAccountClient, "user_info", self)

    def __call__(self, openid: str, lang: str = "zh_CN") -> FollowerInfo:
        self.calls.append(openid)
        if isinstance(self.info, Exception):
            raise self.info
        return self.info


def _info(unionid: str | None) -> FollowerInfo:
    return FollowerInfo(openid=OPENID, subscribed=True, subscribe_time=1700000000, unionid=unionid)


def test_a_new_followers_unionid_arrives_after_the_commit_through_celery(
    oa, monkeypatch, django_capture_on_commit_callbacks
):
    fake = FakeUserInfo(monkeypatch, _info("union-42"))
    user = UserFactory()
    identity = WechatIdentityFactory(user=user, appid=APPID, openid=OPENID, kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        oa.post(event_message(OPENID, "subscribe", ""))
    assert fake.calls == []  # not in the request
    assert len(callbacks) == 1
    callbacks[0]()  # the commit: the task runs (inline here, a worker in production)
    assert fake.calls == [OPENID]
    assert Follower.objects.get().unionid == "union-42"
    identity.refresh_from_db()
    assert identity.unionid == "union-42"
    # Known now: a later subscribe sends no task.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        oa.post(event_message(OPENID, "subscribe", "", create_time=1))
    assert callbacks == []


def test_a_unionid_of_another_users_identity_is_not_copied_to_this_identity(oa, monkeypatch, caplog):
    FakeUserInfo(monkeypatch, _info("union-42"))
    WechatIdentityFactory(unionid="union-42")  # someone else's mini-program identity
    identity = WechatIdentityFactory(appid=APPID, openid=OPENID, kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT)
    Follower.objects.create(appid=APPID, openid=OPENID, subscribed=True)
    with caplog.at_level(logging.WARNING):
        assert services.fill_follower_info(appid=APPID, openid=OPENID) == "union-42"
    identity.refresh_from_db()
    assert identity.unionid == ""
    assert Follower.objects.get().unionid == "union-42"
    assert "has the unionid of another user's identity" in caplog.text


@pytest.mark.parametrize(
    ("scanner", "copied"), [("mallory", False), ("pia", True)], ids=["another-person", "the-same-person"]
)
def test_a_unionid_other_than_the_users_own_is_not_copied_to_their_identity(oa, scanner, copied, caplog):
    user = wechat_login(code="pia").user  # the mini-program identity: pia's unionid
    openid = sandbox_openid(scanner)
    # Bound before WeChat said who the follower is (its unionid unknown then).
    identity = WechatIdentityFactory(user=user, appid=APPID, openid=openid, kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT)
    Follower.objects.create(appid=APPID, openid=openid, subscribed=True)
    with caplog.at_level(logging.WARNING):
        assert services.fill_follower_info(appid=APPID, openid=openid) == unionid_for(scanner)
    identity.refresh_from_db()
    assert identity.unionid == (unionid_for(scanner) if copied else "")
    assert Follower.objects.get().unionid == unionid_for(scanner)  # the follower's own record has it
    assert ("left unset" in caplog.text) is not copied


@pytest.mark.parametrize(
    "answer", [ProviderError("wechat", 40003, "invalid openid"), _info(None)], ids=["error", "none"]
)
def test_no_unionid_changes_nothing(oa, monkeypatch, answer):
    FakeUserInfo(monkeypatch, answer)
    Follower.objects.create(appid=APPID, openid=OPENID, subscribed=True)
    assert services.fill_follower_info(appid=APPID, openid=OPENID) is None
    assert Follower.objects.get().unionid == ""


def test_the_task_runs_against_the_sandbox_without_failing_the_reply(oa, django_capture_on_commit_callbacks):
    # Whatever the sandbox answers for user/info, the follower's reply stands.
    with django_capture_on_commit_callbacks(execute=True):
        answer = oa.post(event_message(OPENID, "subscribe", ""))
    assert answer.reply["Content"] == services.WELCOME
    assert Follower.objects.get().subscribed


def test_a_reply_saved_around_the_admins_checks_is_success_and_logged(oa, caplog):
    KeywordReply.objects.create(keyword="bell", content="ding\x07")
    KeywordReply.objects.create(keyword="bad news", reply_type="news", articles=["not an article"])
    for text in ("bell", "bad news"):
        message = {"MsgType": "text", "FromUserName": OPENID, "ToUserName": "gh", "Content": text, "MsgId": "1"}
        assert services.route(appid=APPID, message=message) == services.SUCCESS
    assert caplog.text.count("cannot be sent: fix it in the admin") == 2

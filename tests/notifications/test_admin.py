"""The admin of pushes: progress and counts, deliveries filtered, retrying FAILED (never UNKNOWN) ones;
and `manage.py send_push` for operators."""

from __future__ import annotations

from io import StringIO

import pytest
from django.apps import apps
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.urls import reverse

from notifications.models import PushBatch, PushDelivery
from tests.factories import UserFactory
from tests.notifications.conftest import oa_user

pytestmark = pytest.mark.django_db


def test_every_model_is_in_the_admin():
    models = apps.get_app_config("notifications").get_models()
    assert [m.__name__ for m in models if m not in admin.site._registry] == []


@pytest.fixture
def batch() -> PushBatch:
    batch = PushBatch.objects.create(
        channel="TEMPLATE", template_id="tpl", status="DONE", total=4, sent=2, skipped=1, failed=1, pending=0
    )
    for name, status, errcode in (("a", "SENT", 0), ("b", "SENT", 0), ("c", "FAILED", -1), ("d", "UNKNOWN", 0)):
        PushDelivery.objects.create(
            batch=batch, user=oa_user(name), openid=f"{name}-oa", status=status, errcode=errcode
        )
    return batch


def test_batches_show_a_progress_bar_and_counts(admin_client, batch):
    page = admin_client.get(reverse("admin:notifications_pushbatch_changelist")).content.decode()
    assert "push-progress" in page and "100%" in page and "cdn" not in page.lower()
    detail = admin_client.get(reverse("admin:notifications_pushbatch_change", args=[batch.pk])).content.decode()
    assert "4 recipients: 2 sent, 1 skipped" in detail


def test_deliveries_filter_by_status_and_errcode(admin_client, batch):
    url = reverse("admin:notifications_pushdelivery_changelist")
    page = admin_client.get(url, {"status__exact": "FAILED", "errcode": "-1"}).content.decode()
    assert "c-oa" in page and "a-oa" not in page


def test_the_retry_action_resends_failed_never_unknown(admin_client, batch, wechat, django_capture_on_commit_callbacks):
    ids = [str(pk) for pk in PushDelivery.objects.filter(batch=batch).values_list("pk", flat=True)]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:notifications_pushdelivery_changelist"),
            {"action": "retry_failed", "_selected_action": ids},
            follow=True,
        )
    assert "1 failed deliveries will be sent again" in response.content.decode()
    assert wechat.openids() == ["c-oa"]
    batch.refresh_from_db()
    assert (batch.sent, batch.failed, batch.status) == (3, 0, "DONE")
    assert PushDelivery.objects.get(openid="d-oa").status == "UNKNOWN"


@pytest.mark.django_db(transaction=True)  # the command's batch is committed, then followed to its end
def test_send_push_command_sends_and_reports(wechat):
    users = [oa_user("ann"), oa_user("bob"), UserFactory(username="carl")]
    out = StringIO()
    call_command(
        "send_push",
        "--channel=TEMPLATE",
        "--template=tpl",
        '--data={"thing1": "Hello"}',
        "--users=" + ",".join(str(u.pk) for u in users),
        stdout=out,
    )
    text = out.getvalue()
    assert "3/3" in text and "DONE: 2 sent, 1 skipped, 0 failed" in text
    assert sorted(wechat.openids()) == ["ann-oa", "bob-oa"]


def test_send_push_command_refuses_bad_input(wechat):
    with pytest.raises(CommandError, match="JSON"):
        call_command("send_push", "--channel=TEMPLATE", "--template=t", "--data=nope", "--all")
    with pytest.raises(CommandError, match="templateId"):
        call_command("send_push", "--channel=TEMPLATE", '--data={"a": "b"}', "--all")

"""payments/admin.py: orders that need a human are counted on the admin index and filtered in the list;
refunds and payment events are an audit trail; amounts in yuan beside fen; the order page's refund form."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from payments.models import Order, PaymentEvent, Product, Refund
from tests.factories import OrderFactory
from tests.payments.notify_bodies import is_success, paid_at_sandbox, post_notify, refund_in_flight


def test_the_admin_index_counts_orders_needing_attention_and_links_to_them(admin_client, products, buyer):
    assert "orders-needing-attention" not in admin_client.get(reverse("admin:index")).content.decode()
    OrderFactory.create_batch(2, user=buyer, product=products["coffee"], needs_attention=True, attention_reason="x")
    OrderFactory(user=buyer, product=products["coffee"])

    page = admin_client.get(reverse("admin:index")).content.decode()
    link = reverse("admin:payments_order_changelist") + "?needs_attention__exact=1"
    assert 'id="orders-needing-attention"' in page and f'href="{link}">2 orders need attention' in page
    listed = admin_client.get(link)
    assert listed.status_code == 200 and listed.context["cl"].result_count == 2


def test_settled_clears_the_flag_of_the_selected_orders_only(admin_client, products, buyer):
    flagged = OrderFactory(user=buyer, product=products["coffee"], needs_attention=True, attention_reason="x")
    other = OrderFactory(user=buyer, product=products["coffee"], needs_attention=True, attention_reason="y")
    response = admin_client.post(
        reverse("admin:payments_order_changelist"), {"action": "settled", "_selected_action": [flagged.pk]}
    )
    assert response.status_code == 302
    assert list(Order.objects.order_by("pk").values_list("needs_attention", flat=True)) == [False, True]
    assert Order.objects.get(pk=other.pk).attention_reason == "y"


# --- the audit trail ---------------------------------------------------------------------------------


@pytest.fixture
def refunded_order(products, buyer, staff, wechatpay_sandbox):
    """A paid v3 order with a refund in flight and two events (the pay notify, the refund's query)."""
    order, refund = refund_in_flight(wechatpay_sandbox, "V3", buyer=buyer, staff=staff)
    return order, refund, PaymentEvent.objects.filter(order=order).first()


def test_refunds_and_events_are_read_never_added_changed_or_deleted(admin_client, refunded_order):
    order, refund, event = refunded_order
    for model, row in (("refund", refund), ("paymentevent", event)):
        assert admin_client.get(reverse(f"admin:payments_{model}_add")).status_code == 403
        assert admin_client.get(reverse(f"admin:payments_{model}_delete", args=[row.pk])).status_code == 403
        listed = admin_client.get(reverse(f"admin:payments_{model}_changelist"))
        assert listed.status_code == 200 and "delete_selected" not in listed.content.decode()
        page = admin_client.get(reverse(f"admin:payments_{model}_change", args=[row.pk]))
        assert page.status_code == 200 and page.context["has_change_permission"] is False  # a view, no form
        assert 'name="_save"' not in page.content.decode()
        edit = admin_client.post(reverse(f"admin:payments_{model}_change", args=[row.pk]), {"amount": "1"})
        assert edit.status_code == 403
    # Orders are not deleted either (their events and refunds point at them), nor added by hand.
    assert admin_client.get(reverse("admin:payments_order_delete", args=[order.pk])).status_code == 403
    assert admin_client.get(reverse("admin:payments_order_add")).status_code == 403
    assert Refund.objects.count() == 1 and PaymentEvent.objects.filter(order=order).exists()


def test_amounts_are_shown_in_yuan_beside_fen(admin_client, refunded_order):
    order, refund, _ = refunded_order
    orders = admin_client.get(reverse("admin:payments_order_changelist")).content.decode()
    assert '¥18.00<br><span class="quiet">1800 fen</span>' in orders and "V3 NATIVE" in orders
    assert "¥8.00 (800 fen)" in admin_client.get(reverse("admin:payments_refund_changelist")).content.decode()
    products = admin_client.get(reverse("admin:payments_product_changelist")).content.decode()
    assert "¥0.01 (1 fen)" in products
    page = admin_client.get(reverse("admin:payments_order_change", args=[order.pk])).content.decode()
    assert "¥18.00 (1800 fen)" in page and "¥8.00 (800 fen)" in page  # amount, and the refund inline


def test_the_order_page_refunds_the_amount_asked_for(admin_client, products, buyer, staff, wechatpay_sandbox):
    order = paid_at_sandbox(buyer, "V2")
    assert is_success("V2", post_notify(*wechatpay_sandbox.pay_notify(order.out_trade_no)))
    change = admin_client.get(reverse("admin:payments_order_change", args=[order.pk])).content.decode()
    url = reverse("admin:payments_order_refund", args=[order.pk])
    assert f'href="{url}"' in change

    form = admin_client.get(url)
    assert form.status_code == 200 and form.context["form"]["amount"].initial == 1800
    assert "1 to 1800 fen; ¥18.00 can be refunded." in form.content.decode()

    too_much = admin_client.post(url, {"amount": "1801", "reason": ""})
    assert too_much.status_code == 200 and too_much.context["form"].errors["amount"]
    assert Refund.objects.count() == 0

    done = admin_client.post(url, {"amount": "500", "reason": "one cup short"}, follow=True)
    refund = Refund.objects.get()
    assert (refund.order_id, refund.amount, refund.reason) == (order.pk, 500, "one cup short")
    assert f"Refund {refund.out_refund_no} of ¥5.00 (500 fen): PROCESSING." in done.content.decode()
    # What is left counts the refund in flight.
    assert admin_client.get(url).context["form"]["amount"].initial == 1300


def test_the_refund_page_shows_the_services_refusal_and_changes_nothing(admin_client, products, buyer):
    pending = OrderFactory(user=buyer, product=products["coffee"], status="PENDING")
    answer = admin_client.post(reverse("admin:payments_order_refund", args=[pending.pk]), {"amount": "100"})
    assert answer.status_code == 200
    assert "Only a paid order can be refunded; this one is PENDING." in answer.content.decode()
    assert Refund.objects.count() == 0


def test_the_refund_page_needs_the_change_permission(client, products, buyer, django_user_model):
    order = OrderFactory(user=buyer, product=products["coffee"])
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(viewer)
    assert client.get(reverse("admin:payments_order_refund", args=[order.pk])).status_code == 403
    assert client.post(reverse("admin:payments_order_refund", args=[order.pk]), {"amount": "1"}).status_code == 403


def test_a_product_cannot_be_priced_under_one_fen_in_the_admin(admin_client, db):
    form = {"sku": "free", "title": "Free", "price": "0", "active": "on"}
    answer = admin_client.post(reverse("admin:payments_product_add"), form)
    assert answer.status_code == 200 and answer.context["adminform"].form.errors["price"]
    assert not Product.objects.exists()

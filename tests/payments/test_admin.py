"""payments/admin.py: orders that need a human are counted on the admin index and filtered in the list."""

from __future__ import annotations

from django.urls import reverse

from payments.models import Order
from tests.factories import OrderFactory


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

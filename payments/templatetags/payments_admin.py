"""The admin index's count of orders that need a human (payments.admin sets the index template)."""

from django import template

from payments.models import Order

register = template.Library()


@register.simple_tag
def orders_needing_attention() -> int:
    return Order.objects.filter(needs_attention=True).count()

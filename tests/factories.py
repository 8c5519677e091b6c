"""Model factories (factory_boy): the test data every module builds its cases from."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone

from accounts.models import User, WechatIdentity
from config import providers
from payments.models import Order, Product, Refund
from payments.services import new_out_trade_no


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    # Unusable, as wechatLogin's users have (and no slow hashing per user); pass password="..." to log in.
    password = factory.django.Password(None)


class StaffFactory(UserFactory):
    username = "staff"
    is_staff = True


class WechatIdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WechatIdentity

    user = factory.SubFactory(UserFactory)
    appid = factory.LazyFunction(providers.miniprogram_appid)
    openid = factory.Sequence(lambda n: f"o-openid-{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product
        django_get_or_create = ("sku",)

    sku = "coffee"
    title = factory.LazyAttribute(lambda p: p.sku.capitalize())
    price = 1800


class OrderFactory(factory.django.DjangoModelFactory):
    """A pending WeChat Pay v3 NATIVE order of one product, as createWechatPayOrder stores it."""

    class Meta:
        model = Order

    out_trade_no = factory.LazyFunction(new_out_trade_no)
    user = factory.SubFactory(UserFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = 1
    amount = factory.LazyAttribute(lambda o: o.product.price * o.quantity)
    provider = Order.Provider.WECHATPAY
    api_version = Order.ApiVersion.V3
    trade_type = Order.TradeType.NATIVE
    sign_type = "RSA"
    status = Order.Status.PENDING
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(minutes=30))


class RefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Refund

    order = factory.SubFactory(OrderFactory, status=Order.Status.PAID)
    out_refund_no = factory.LazyFunction(lambda: "R" + new_out_trade_no()[:31])
    amount = factory.LazyAttribute(lambda r: r.order.amount)

"""GraphQL for payments: thin resolvers over payments.services and payments.selectors."""

from __future__ import annotations

from typing import Any

import graphene
from django.conf import settings
from graphene import relay
from graphene_django import DjangoObjectType
from graphql import GraphQLResolveInfo

from payments import selectors, services
from payments.models import Order as OrderModel
from payments.models import Product as ProductModel
from payments.models import Refund as RefundModel
from schema.connections import ForwardConnectionField
from schema.permissions import current_user, login_required, staff_required
from schema.ratelimit import enforce

OrderStatus = graphene.Enum("OrderStatus", [(s, s) for s in OrderModel.Status.values])
PaymentProvider = graphene.Enum("PaymentProvider", [(s, s) for s in OrderModel.Provider.values])
TradeType = graphene.Enum("TradeType", [(s, s) for s in OrderModel.TradeType.values])
ApiVersion = graphene.Enum("ApiVersion", [(s, s) for s in OrderModel.ApiVersion.values])
AlipayMethod = graphene.Enum(
    "AlipayMethod",
    [("PAGE", "PAGE"), ("WAP", "WAP"), ("APP", "APP"), ("QR", "QR")],
    description="PAGE: a desktop browser's pay page; WAP: a phone browser's; APP: the Alipay SDK; QR: a code to scan.",
)
RefundStatus = graphene.Enum("RefundStatus", [(s, s) for s in RefundModel.Status.values])
PayApp = graphene.Enum(
    "PayApp",
    [(app.value, app.value) for app in services.PayApp],
    description="The WeChat app a WeChat Pay order is for: MINIPROGRAM (wx.requestPayment) or OFFICIAL_ACCOUNT "
    "(an H5 page in WeChat: WeixinJSBridge or wx.chooseWXPay).",
)


class Product(DjangoObjectType):
    price = graphene.Int(required=True, description="fen (1/100 yuan)")

    class Meta:
        model = ProductModel
        fields = ("sku", "title", "price")


class Order(DjangoObjectType):
    status = OrderStatus(required=True)
    provider = PaymentProvider(required=True)
    trade_type = TradeType(required=True)
    api_version = ApiVersion(description="WeChat Pay's API version; null for Alipay.")
    amount = graphene.Int(required=True, description="fen")
    refunded_amount = graphene.Int(required=True, description="fen")
    transaction_id = graphene.String()

    class Meta:
        model = OrderModel
        interfaces = (relay.Node,)
        fields = (
            "out_trade_no",
            "status",
            "amount",
            "provider",
            "api_version",
            "trade_type",
            "transaction_id",
            "paid_at",
            "refunded_amount",
            "created_at",
            "closed_at",
            "expires_at",
            "product",
            "quantity",
        )

    @classmethod
    def get_queryset(cls, queryset: Any, info: GraphQLResolveInfo) -> Any:
        return queryset.select_related("product")

    # A new instance holds TextChoices members; the enums serialize plain values.
    @staticmethod
    def resolve_status(order: OrderModel, info: GraphQLResolveInfo) -> str:
        return str(OrderModel.Status(order.status).value)

    @staticmethod
    def resolve_provider(order: OrderModel, info: GraphQLResolveInfo) -> str:
        return str(OrderModel.Provider(order.provider).value)

    @staticmethod
    def resolve_trade_type(order: OrderModel, info: GraphQLResolveInfo) -> str:
        return str(OrderModel.TradeType(order.trade_type).value)

    @staticmethod
    def resolve_api_version(order: OrderModel, info: GraphQLResolveInfo) -> str | None:
        return str(OrderModel.ApiVersion(order.api_version).value) if order.api_version else None


class OrderConnection(relay.Connection):
    class Meta:
        node = Order


class Refund(DjangoObjectType):
    status = RefundStatus(required=True)
    amount = graphene.Int(required=True, description="fen")

    class Meta:
        model = RefundModel
        fields = ("out_refund_no", "amount", "status", "reason", "created_at", "succeeded_at")

    @staticmethod
    def resolve_status(refund: RefundModel, info: GraphQLResolveInfo) -> str:
        return str(RefundModel.Status(refund.status).value)


class PayParams(graphene.ObjectType):
    """Exactly the object wx.requestPayment (mini-program) and WeixinJSBridge.invoke('getBrandWCPayRequest')
    (official-account H5 page) take; appId is the order's app. wx.chooseWXPay takes the same values with
    `timestamp` spelled in lower case (the signature is still over timeStamp)."""

    app_id = graphene.String(name="appId", required=True)
    time_stamp = graphene.String(name="timeStamp", required=True)
    nonce_str = graphene.String(name="nonceStr", required=True)
    package = graphene.String(required=True)
    sign_type = graphene.String(name="signType", required=True)
    pay_sign = graphene.String(name="paySign", required=True)


class AppPayParams(graphene.ObjectType):
    """What the WeChat Open SDK's PayReq takes in an app."""

    appid = graphene.String(required=True)
    partnerid = graphene.String(required=True)
    prepayid = graphene.String(required=True)
    package = graphene.String(required=True)
    noncestr = graphene.String(required=True)
    timestamp = graphene.String(required=True)
    sign = graphene.String(required=True)


class Query(graphene.ObjectType):
    products = graphene.List(graphene.NonNull(Product), required=True)
    order = graphene.Field(Order, out_trade_no=graphene.String(required=True))
    orders = ForwardConnectionField(
        Order, status=OrderStatus(), provider=PaymentProvider(), description="Your orders (staff: everyone's)."
    )

    @staticmethod
    def resolve_products(root: Any, info: GraphQLResolveInfo) -> Any:
        return selectors.active_products()

    @staticmethod
    @login_required
    def resolve_order(root: Any, info: GraphQLResolveInfo, out_trade_no: str) -> Any:
        return selectors.order_for(user=current_user(info), out_trade_no=out_trade_no)

    @staticmethod
    def resolve_orders(
        root: Any, info: GraphQLResolveInfo, status: str | None = None, provider: str | None = None, **kwargs: Any
    ) -> Any:
        return selectors.orders_for(
            user=current_user(info),
            status=status.value if status else None,  # type: ignore[attr-defined]
            provider=provider.value if provider else None,  # type: ignore[attr-defined]
        )


class CreateWechatPayOrderInput(graphene.InputObjectType):
    sku = graphene.String(required=True)
    quantity = graphene.Int(required=True)
    trade_type = TradeType(required=True)
    api_version = ApiVersion(description="Defaults to the server's WECHATPAY_API_VERSION.")
    app = PayApp(
        description="The app the order is placed for: its appid names the order and its openid pays a JSAPI "
        "order. Default: MINIPROGRAM when you have a mini-program identity (wechatLogin), else OFFICIAL_ACCOUNT "
        "when you have an official-account one (officialAccountLogin, bindOfficialAccount), else MINIPROGRAM. "
        "OFFICIAL_ACCOUNT is BAD_USER_INPUT when the account is not configured, and so is JSAPI without an "
        "openid in the app. APP orders name the merchant's app (WECHATPAY_APPID)."
    )


class CreateWechatPayOrder(graphene.Mutation):
    """Creates a server-priced order and the parameters to pay it."""

    class Arguments:
        input = CreateWechatPayOrderInput(required=True)

    order = graphene.Field(Order, required=True)
    pay_params = graphene.Field(
        PayParams,
        description="JSAPI: pass to wx.requestPayment (MINIPROGRAM) or "
        "WeixinJSBridge.invoke('getBrandWCPayRequest', payParams, cb) (OFFICIAL_ACCOUNT) as is.",
    )
    app_params = graphene.Field(AppPayParams, description="APP: pass to the Open SDK.")
    code_url = graphene.String(description="NATIVE: render as a QR code.")
    h5_url = graphene.String(description="H5: open in the mobile browser.")

    @staticmethod
    @login_required
    def mutate(root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> CreateWechatPayOrder:
        request = info.context
        user = current_user(info)
        enforce(request, group="createOrder:user", key=lambda g, r: str(user.pk), rate=settings.RATELIMIT_ORDER)
        payment = services.create_wechatpay_order(
            user=user,
            sku=input["sku"],
            quantity=input["quantity"],
            trade_type=input["trade_type"].value,
            api_version=input["api_version"].value if input.get("api_version") else None,
            app=input["app"].value if input.get("app") else None,
            # WeChat Pay checks H5 payers' addresses: behind a proxy, the header it sets.
            client_ip=request.META.get(settings.RATELIMIT_IP_META_KEY or "REMOTE_ADDR") or "127.0.0.1",
        )
        params = payment.pay_params
        return CreateWechatPayOrder(
            order=payment.order,
            pay_params=PayParams(
                app_id=params["appId"],
                time_stamp=params["timeStamp"],
                nonce_str=params["nonceStr"],
                package=params["package"],
                sign_type=params["signType"],
                pay_sign=params["paySign"],
            )
            if params
            else None,
            app_params=AppPayParams(**payment.app_params) if payment.app_params else None,
            code_url=payment.code_url or None,
            h5_url=payment.h5_url or None,
        )


class CreateAlipayOrderInput(graphene.InputObjectType):
    sku = graphene.String(required=True)
    quantity = graphene.Int(required=True)
    method = AlipayMethod(required=True)
    return_url = graphene.String(
        description="PAGE and WAP: the front end's page the payer lands on, with outTradeNo and status "
        "added (its host must be in ALIPAY_RETURN_HOSTS)."
    )


class CreateAlipayOrder(graphene.Mutation):
    """Creates a server-priced order and what the payer opens to pay it with Alipay."""

    class Arguments:
        input = CreateAlipayOrderInput(required=True)

    order = graphene.Field(Order, required=True)
    pay_url = graphene.String(description="PAGE and WAP: open in the browser (a GET).")
    order_string = graphene.String(description="APP: pass to the Alipay SDK's payOrder as is.")
    qr_code = graphene.String(description="QR: render as a QR code for the payer to scan.")

    @staticmethod
    @login_required
    def mutate(root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> CreateAlipayOrder:
        user = current_user(info)
        enforce(info.context, group="createOrder:user", key=lambda g, r: str(user.pk), rate=settings.RATELIMIT_ORDER)
        payment = services.create_alipay_order(
            user=user,
            sku=input["sku"],
            quantity=input["quantity"],
            method=input["method"].value,
            return_url=input.get("return_url") or "",
        )
        return CreateAlipayOrder(
            order=payment.order,
            pay_url=payment.pay_url or None,
            order_string=payment.order_string or None,
            qr_code=payment.code_url or None,
        )


class SyncOrder(graphene.Mutation):
    """Asks the provider for the order's state (use after wx.requestPayment; its callback is not proof)."""

    class Arguments:
        out_trade_no = graphene.String(required=True)

    Output = Order

    @staticmethod
    @login_required
    def mutate(root: Any, info: GraphQLResolveInfo, out_trade_no: str) -> OrderModel:
        return services.sync_order(user=current_user(info), out_trade_no=out_trade_no)


class CloseOrder(graphene.Mutation):
    class Arguments:
        out_trade_no = graphene.String(required=True)

    Output = Order

    @staticmethod
    @login_required
    def mutate(root: Any, info: GraphQLResolveInfo, out_trade_no: str) -> OrderModel:
        return services.close_order(user=current_user(info), out_trade_no=out_trade_no)


class RefundOrder(graphene.Mutation):
    """Refunds part or all of a paid order (staff)."""

    class Arguments:
        out_trade_no = graphene.String(required=True)
        amount = graphene.Int(required=True, description="fen")
        reason = graphene.String()

    Output = Refund

    @staticmethod
    @staff_required
    def mutate(root: Any, info: GraphQLResolveInfo, out_trade_no: str, amount: int, reason: str = "") -> RefundModel:
        return services.refund_order(staff=current_user(info), out_trade_no=out_trade_no, amount=amount, reason=reason)


class Mutation(graphene.ObjectType):
    create_wechat_pay_order = CreateWechatPayOrder.Field()
    create_alipay_order = CreateAlipayOrder.Field()
    sync_order = SyncOrder.Field()
    close_order = CloseOrder.Field()
    refund_order = RefundOrder.Field()

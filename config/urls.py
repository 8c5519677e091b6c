from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from config import providers
from core.health import healthz
from core.views import favicon
from payments import views as payment_views
from providers.sandbox import web as sandbox_web
from schema.view import AppGraphQLView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("graphql/", AppGraphQLView.as_view(), name="graphql"),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("notify/wechatpay/v2/", payment_views.wechatpay_v2, name="notify-wechatpay-v2"),
    path("notify/wechatpay/v2/refund/", payment_views.wechatpay_v2_refund, name="notify-wechatpay-v2-refund"),
    path("notify/wechatpay/v3/", payment_views.wechatpay_v3, name="notify-wechatpay-v3"),
    path("notify/alipay/", payment_views.alipay, name="notify-alipay"),
    path("pay/alipay/return/", payment_views.alipay_return, name="alipay-return"),
    path("wechat/official-account/", include("officialaccount.urls")),
]

if settings.BENCH_ENDPOINTS:
    from bench.views import bare

    urlpatterns.append(path("bench/bare", bare, name="bench-bare"))

if settings.SANDBOX:
    urlpatterns.append(path("sandbox/", include(sandbox_web.urlpatterns(providers.sandbox))))

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from config import providers
from config.health import healthz
from providers.sandbox import web as sandbox_web
from schema.view import AppGraphQLView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("graphql/", AppGraphQLView.as_view(), name="graphql"),
    path("healthz", healthz, name="healthz"),
]

if settings.BENCH_ENDPOINTS:
    from bench.views import bare

    urlpatterns.append(path("bench/bare", bare, name="bench-bare"))

if settings.SANDBOX:
    urlpatterns.append(path("sandbox/", include(sandbox_web.urlpatterns(providers.sandbox))))

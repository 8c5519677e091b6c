"""The baseline for benchmarks: a bare Django JSON view through the same middleware stack."""

from django.http import HttpRequest, JsonResponse


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})

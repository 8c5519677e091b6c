"""Small views every page needs."""

from __future__ import annotations

from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpRequest, HttpResponsePermanentRedirect


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    # Browsers ask /favicon.ico of every page (the admin's among them); resolved per request, as the
    # hashed name exists only after collectstatic.
    return HttpResponsePermanentRedirect(staticfiles_storage.url("favicon.svg"))

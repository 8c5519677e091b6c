"""URLs the front end hands us to send a browser to, or to sign for."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from django.utils.http import url_has_allowed_host_and_scheme


def on_allowed_host(url: str, hosts: Iterable[str]) -> bool:
    """An absolute http(s) URL on one of `hosts` (host and port as written; no user info): never an
    open redirect, nor a signature for someone else's page."""
    return urlsplit(url).scheme in ("http", "https") and url_has_allowed_host_and_scheme(url, allowed_hosts=set(hosts))

"""Simulators of the providers' servers, so every flow works offline.

The real clients are the only clients: the sandbox replaces the server side. It is
reached in-process (`transport.SandboxTransport`, a requests adapter) or over real
HTTP under /sandbox/ (`web.urlpatterns`), both backed by one shared store.
"""

"""accounts' management commands: ensure_dev_superuser, which `make run` runs before serving."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import User


def _ensure_dev_superuser():
    out = io.StringIO()
    call_command("ensure_dev_superuser", stdout=out)
    return out.getvalue()


def test_dev_superuser_is_admin_admin_and_created_once(db, settings):
    settings.DEBUG = True
    _ensure_dev_superuser()
    first = User.objects.get()
    # A second run (every `make run`) neither adds a user nor resets a password changed since.
    first.set_password("changed-since")
    first.save()
    assert "exists" in _ensure_dev_superuser()
    user = User.objects.get()
    assert (user.pk, user.username) == (first.pk, "admin")
    assert user.is_superuser and user.is_staff and user.is_active
    assert user.check_password("changed-since")


def test_dev_superuser_logs_in_to_the_admin_with_the_readme_password(db, settings, client):
    settings.DEBUG = True
    _ensure_dev_superuser()
    assert client.login(username="admin", password="admin")  # README: "admin / admin"
    assert client.get(reverse("admin:index")).status_code == 200


def test_dev_superuser_is_refused_with_debug_off(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=0"):
        _ensure_dev_superuser()
    assert User.objects.count() == 0

"""DEBUG=0's static files storage: hashed, compressed copies; the vendored GraphiQL files unchanged by it,
so the integrity hashes their page checks still hold."""

from __future__ import annotations

from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command

from scripts.vendor_graphiql import assets, sri


def test_collectstatic_keeps_every_vendored_file_as_its_integrity_hash_says(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "core.storage.StaticFilesStorage"}}
    # Without the storage's change, this fails: graphiql.min.css names a source map that is not shipped.
    call_command("collectstatic", interactive=False, verbosity=0)
    for asset in assets():
        stored = staticfiles_storage.stored_name(asset.static_path)
        assert stored != asset.static_path  # hashed: served with far-future cache headers
        assert sri((tmp_path / stored).read_bytes()) == asset.sri, stored
        assert (tmp_path / (stored + ".gz")).is_file()
    # Django's own rewriting still applies elsewhere: the admin's CSS links hashed names.
    assert staticfiles_storage.stored_name("admin/css/base.css") != "admin/css/base.css"

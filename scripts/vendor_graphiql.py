"""Fetches the GraphiQL assets graphene-django pins into static/vendor/, so /graphql/ needs no CDN.

    .venv/bin/python scripts/vendor_graphiql.py

Versions and SHA-256 integrity hashes are graphene-django's own (GraphQLView's class attributes): a
file whose hash differs is refused. Each package's licence file is kept beside its assets. Run it
after upgrading graphene-django (tests/schema/test_graphiql.py says when).
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import django
import requests
from django.conf import settings

# graphene_django reads settings on import; its pinned versions need none of ours.
if not settings.configured:
    settings.configure()
    django.setup()

from graphene_django.views import GraphQLView  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
VENDOR = BASE_DIR / "static" / "vendor"
REGISTRY = "https://registry.npmjs.org"
LICENCES = ("LICENSE", "LICENSE.md", "LICENSE.txt")


@dataclass(frozen=True)
class Asset:
    package: str
    version: str
    path: str  # inside the package
    sri: str  # "sha256-<base64>"

    @property
    def static_path(self) -> str:
        """Its name for {% static %} and the staticfiles finders."""
        return f"vendor/{self.package}@{self.version}/{self.path}"

    @property
    def target(self) -> Path:
        return VENDOR.parent / self.static_path


def assets(view: type[GraphQLView] = GraphQLView) -> list[Asset]:
    """What graphene-django's GraphiQL page loads, as graphene-django pins it."""
    return [
        Asset("whatwg-fetch", view.whatwg_fetch_version, "dist/fetch.umd.js", view.whatwg_fetch_sri),
        Asset("react", view.react_version, "umd/react.production.min.js", view.react_sri),
        Asset("react-dom", view.react_version, "umd/react-dom.production.min.js", view.react_dom_sri),
        Asset("graphiql", view.graphiql_version, "graphiql.min.js", view.graphiql_sri),
        Asset("graphiql", view.graphiql_version, "graphiql.min.css", view.graphiql_css_sri),
        Asset(
            "graphql-ws",
            view.subscriptions_transport_ws_version,
            "umd/graphql-ws.min.js",
            view.subscriptions_transport_ws_sri,
        ),
        Asset(
            "@graphiql/plugin-explorer",
            view.graphiql_plugin_explorer_version,
            "dist/graphiql-plugin-explorer.umd.js",
            view.graphiql_plugin_explorer_sri,
        ),
        Asset(
            "@graphiql/plugin-explorer",
            view.graphiql_plugin_explorer_version,
            "dist/style.css",
            view.graphiql_plugin_explorer_css_sri,
        ),
    ]


def sri(data: bytes) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


def _tarball(package: str, version: str) -> tarfile.TarFile:
    name = package.rsplit("/", 1)[-1]
    url = f"{REGISTRY}/{package}/-/{name}-{version}.tgz"
    response = requests.get(url, timeout=60)
    response.raise_for_status()
    return tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz")


def main() -> int:
    wanted = assets()
    packages = sorted({(a.package, a.version) for a in wanted})
    for done, (package, version) in enumerate(packages, start=1):
        print(f"[{done}/{len(packages)}] {package}@{version}", flush=True)
        with _tarball(package, version) as tar:
            members = {m.name.removeprefix("package/"): m for m in tar.getmembers() if m.isfile()}
            for asset in (a for a in wanted if (a.package, a.version) == (package, version)):
                data = tar.extractfile(members[asset.path]).read()  # type: ignore[union-attr]
                if sri(data) != asset.sri:
                    print(f"  {asset.path}: hash {sri(data)} is not graphene-django's {asset.sri}", file=sys.stderr)
                    return 1
                asset.target.parent.mkdir(parents=True, exist_ok=True)
                asset.target.write_bytes(data)
                print(f"  {asset.path} ({len(data):,} bytes)")
            # @graphiql/plugin-explorer ships no licence file: its package.json declares it (MIT).
            licence = next(members[n] for n in (*LICENCES, "package.json") if n in members)
            (VENDOR / f"{package}@{version}" / licence.name.removeprefix("package/")).write_bytes(
                tar.extractfile(licence).read()  # type: ignore[union-attr]
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

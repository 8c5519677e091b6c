"""Static files storage for DEBUG=0 (see settings.STORAGES)."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


def _without_source_maps(patterns: tuple) -> tuple:  # type: ignore[type-arg]
    def kept(rule: str | tuple[str, str]) -> bool:
        return "sourceMappingURL" not in (rule if isinstance(rule, str) else rule[0])

    return tuple((glob, tuple(rule for rule in rules if kept(rule))) for glob, rules in patterns)


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """whitenoise's hashed, compressed files, leaving `sourceMappingURL` comments as they are. GraphiQL's
    vendored files name source maps we do not ship (a missing file fails collectstatic), and a rewritten
    file would no longer match the integrity hash its page checks it against."""

    patterns = _without_source_maps(CompressedManifestStaticFilesStorage.patterns)

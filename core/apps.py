from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


def _create_cache_table(using: str = "default", **kwargs: object) -> None:
    # `migrate` is the one set-up step (make run, the README, tests' servers): it also creates the
    # cache table when the cache is a database table (the embedded default). A no-op otherwise.
    call_command("createcachetable", database=using, verbosity=0)


class CoreConfig(AppConfig):
    name = "core"

    def ready(self) -> None:
        post_migrate.connect(_create_cache_table, sender=self)

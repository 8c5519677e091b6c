"""Creates the development superuser admin/admin, only when DEBUG is on."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User

USERNAME = "admin"
PASSWORD = "admin"


class Command(BaseCommand):
    help = "Create the development superuser (admin/admin) when DEBUG is on."

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG:
            raise CommandError("Refusing to create a well-known superuser with DEBUG=0; use createsuperuser.")
        if User.objects.filter(username=USERNAME).exists():
            self.stdout.write(f"Dev superuser '{USERNAME}' exists.")
            return
        User.objects.create_superuser(username=USERNAME, email="", password=PASSWORD)
        self.stdout.write(self.style.SUCCESS(f"Created dev superuser {USERNAME} / {PASSWORD}."))

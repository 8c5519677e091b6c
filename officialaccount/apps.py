from django.apps import AppConfig


class OfficialAccountConfig(AppConfig):
    name = "officialaccount"
    verbose_name = "Official account"
    default_auto_field = "django.db.models.BigAutoField"

from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Installed for its templates (the /sandbox/ pages); its URLs are mounted only when SANDBOX is on."""

    name = "providers.sandbox"
    label = "sandbox"
    verbose_name = "Provider sandbox"

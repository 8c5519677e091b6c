"""The replies to the CLICK keys of the example menu.json: edit or deactivate them in the admin."""

from django.db import migrations

REPLIES = {
    "MENU_HELP": "Send us a message and we will answer here. Your orders are under Account > My orders.",
    "MENU_BIND": (
        "To get your notifications here, log in to our mini-program or website, choose to bind WeChat, "
        "and scan the QR code it shows with this WeChat."
    ),
}


def seed(apps, schema_editor):
    KeywordReply = apps.get_model("officialaccount", "KeywordReply")
    for key, content in REPLIES.items():
        if not KeywordReply.objects.filter(match="click", keyword=key).exists():
            KeywordReply.objects.create(match="click", keyword=key, reply_type="text", content=content)


def unseed(apps, schema_editor):
    KeywordReply = apps.get_model("officialaccount", "KeywordReply")
    KeywordReply.objects.filter(match="click", keyword__in=list(REPLIES)).delete()


class Migration(migrations.Migration):
    dependencies = [("officialaccount", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]

"""Demo products for the embedded default (idempotent)."""

from django.core.management.base import BaseCommand

from payments.models import Product

DEMO = [
    ("coffee", "A cup of coffee", 1800),
    ("vip-month", "VIP membership, one month", 2990),
    ("sticker", "Sticker pack", 1),
]


class Command(BaseCommand):
    help = "Create the demo products (coffee, vip-month, sticker) if missing."

    def handle(self, *args: object, **options: object) -> None:
        for sku, title, price in DEMO:
            product, created = Product.objects.get_or_create(sku=sku, defaults={"title": title, "price": price})
            self.stdout.write(f"{'created' if created else 'exists '} {sku}: {product.price} fen")

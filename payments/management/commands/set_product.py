"""Creates or updates a product from the command line (deploy scripts; the admin does the same by hand)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.money import yuan
from payments.models import Product


class Command(BaseCommand):
    help = "Create or update the product SKU: manage.py set_product coffee --title 'A cup of coffee' --price 1800"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("sku")
        parser.add_argument("--title", help="required for a new product")
        parser.add_argument(
            "--price", type=int, metavar="FEN", help="in fen (1800 is 18.00 yuan); required for a new one"
        )
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--active", dest="active", action="store_true", default=None, help="on sale (the default)")
        state.add_argument("--inactive", dest="active", action="store_false", help="no longer sold; orders are kept")

    def handle(self, *args: object, **options: object) -> None:
        sku = str(options["sku"])
        changes = {name: options[name] for name in ("title", "price", "active") if options[name] is not None}
        product = Product.objects.filter(sku=sku).first()
        created = product is None
        if product is None:
            if "title" not in changes or "price" not in changes:
                raise CommandError(f"{sku} is new: give --title and --price (fen).")
            product = Product(sku=sku)
        for name, value in changes.items():
            setattr(product, name, value)
        try:
            product.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items())) from exc
        product.save()
        self.stdout.write(
            f"{'created' if created else 'updated'} {product.sku}: {product.title!r}, {product.price} fen "
            f"({yuan(product.price)}){'' if product.active else ', inactive'}"
        )

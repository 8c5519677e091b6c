"""Money is integer fen everywhere; this shows it to people."""

from __future__ import annotations


def yuan(fen: int) -> str:
    """1800 -> "¥18.00" (exact: no float on the way)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"

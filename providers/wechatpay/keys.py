"""PEM helpers: read a key given as text or as a path, and the serial number of a certificate."""

from __future__ import annotations

import base64
import os
import re

from Crypto.PublicKey import RSA
from Crypto.Util.asn1 import DerSequence

_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----(.+?)-----END \1-----", re.S)


def pem_text(value: str) -> str:
    """A PEM given inline (newlines may be written as \\n) or as a file path."""
    value = value.strip()
    if not value:
        return ""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    if os.path.isfile(value):
        with open(value, encoding="ascii") as handle:
            return handle.read()
    raise ValueError("expected PEM text or the path of a PEM file")


def public_key_pem(pem: str) -> str:
    """The RSA public key of a PEM public key or X.509 certificate."""
    return RSA.import_key(pem).public_key().export_key().decode()


def certificate_serial(pem: str) -> str:
    """The serial number of an X.509 certificate, upper-case hex, as WeChat Pay writes it."""
    match = _PEM.search(pem)
    if not match or match.group(1) != "CERTIFICATE":
        raise ValueError("not a PEM certificate")
    der = base64.b64decode("".join(match.group(2).split()))
    tbs = DerSequence().decode(DerSequence().decode(der)[0], nr_elements=None)
    # tbsCertificate: [0] version (explicit, optional), serialNumber, ...
    first = tbs[0]
    serial = tbs[1] if isinstance(first, bytes) and first[:1] == b"\xa0" else first
    if not isinstance(serial, int):
        raise ValueError("certificate has no integer serial number")
    return f"{serial:X}"

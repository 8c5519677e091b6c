"""Certificate mode's serial numbers: `app_cert_sn`, `alipay_cert_sn` and `alipay_root_cert_sn`.

A certificate's SN is the MD5 (hex) of its issuer, written as Alipay's SDKs write it (the RDNs in reverse
order of the certificate's, `CN=..,OU=..,O=..,C=..`, short attribute names, values unescaped), followed by
its serial number in decimal. The root SN joins with `_` the SNs of the bundle's RSA-signed certificates.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509

# PKCS#1 signature algorithms (sha256WithRSAEncryption is 1.2.840.113549.1.1.11): the bundle's other
# roots (SM2, ECDSA) take no part in the root SN.
RSA_SIGNATURE_ARC = "1.2.840.113549.1.1"
_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _issuer(certificate: x509.Certificate) -> str:
    parts = []
    for rdn in reversed(certificate.issuer.rdns):
        for attribute in rdn:
            value = attribute.value if isinstance(attribute.value, str) else attribute.value.decode("utf-8")
            parts.append(f"{attribute.rfc4514_attribute_name}={value}")
    return ",".join(parts)


def _sn(certificate: x509.Certificate) -> str:
    text = _issuer(certificate) + str(certificate.serial_number)
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def cert_sn(pem: str) -> str:
    """The SN of the (first) certificate of `pem`; ValueError when there is none."""
    return _sn(x509.load_pem_x509_certificate(pem.encode("ascii")))


def root_cert_sn(bundle_pem: str) -> str:
    """`alipay_root_cert_sn`: the SNs of the bundle's RSA-signed certificates, in order, joined by `_`.

    A certificate that does not load (some parsers refuse the bundle's SM2 root) is skipped: it is not
    RSA-signed anyway."""
    sns = []
    for block in _PEM_BLOCK.findall(bundle_pem):
        try:
            certificate = x509.load_pem_x509_certificate(block.encode("ascii"))
            algorithm = certificate.signature_algorithm_oid.dotted_string
        except ValueError:
            continue
        if algorithm.startswith(RSA_SIGNATURE_ARC):
            sns.append(_sn(certificate))
    return "_".join(sns)

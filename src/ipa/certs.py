"""Self-signed TLS identities for the helpers of one network.

Each helper gets an ECDSA P-256 key and a self-signed certificate whose
common name is ``ipa-helper-<index>`` and whose subject alternative names
cover the hosts it is reached by. Peers pin each other's certificate: a
helper trusts, as roots, exactly the certificates of its two peers, so no
third party's certificate is ever accepted. Collectors pin all three.

Report collectors authenticate to the helpers with client certificates
issued by the network's own certificate authority (:func:`make_ca`,
:func:`issue_collector`): the common name is the collector's name. Helpers
trust only that CA on their collector port and, beyond it, pin each
configured collector's certificate by its SHA-256 fingerprint
(:func:`fingerprint`), so removing a collector from their config revokes it.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["common_name", "fingerprint", "issue_collector", "make_ca", "make_identity"]


def common_name(index: int) -> str:
    """The certificate common name of helper ``index`` (1, 2 or 3)."""
    return f"ipa-helper-{index}"


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    """A certificate for ``key``'s public half, valid from five minutes ago for ``days`` days."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def make_identity(index: int, hosts: Sequence[str], days: int = 825) -> tuple[bytes, bytes]:
    """A new key and self-signed certificate for helper ``index``: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name(index))])
    names = list(dict.fromkeys([*hosts, common_name(index)]))
    cert = (
        _builder(name, name, key, days)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


_CA_NAME = "ipa-network-ca"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=signer,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        crl_sign=signer,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(days: int = 825) -> tuple[bytes, bytes]:
    """A new certificate authority for a network's report collectors: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _CA_NAME)])
    cert = (
        _builder(name, name, key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signer=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_collector(ca_cert: bytes, ca_key: bytes, name: str, days: int = 825) -> tuple[bytes, bytes]:
    """A client certificate for report collector ``name``, signed by the CA: (cert PEM, key PEM)."""
    issuer = x509.load_pem_x509_certificate(ca_cert)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, issuer.subject, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signer=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of a certificate's DER encoding, as lowercase hex."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex()

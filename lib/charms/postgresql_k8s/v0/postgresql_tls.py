"""Build private keys and certificate requests for PostgreSQL, and check received TLS files.

This is a Charmhub charm library of pure helpers: it performs no I/O and knows nothing about
Juju relations, so any charm that serves or reaches PostgreSQL over TLS can use it with
whatever certificates provider it talks to::

    from charms.postgresql_k8s.v0.postgresql_tls import TLSFiles, build_csr, generate_private_key

    key = generate_private_key()
    csr = build_csr(key, "postgresql-k8s-0", sans_dns=["postgresql-k8s-0.svc"], sans_ip=[ip])
    ...  # send csr to the provider; later, with its answer:
    files = TLSFiles(ca=provider_ca, cert=provider_cert, key=key)
    files.validate()  # raises PostgreSQLTLSError before PostgreSQL is given a bad pair

libpq's ``sslmode=verify-full`` checks the host against the certificate's subject alternative
names when there are any, so put every name and address clients use in ``sans_dns`` and
``sans_ip``, the common name included.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

LIBID = "7853a62ec2414643b379413af952eda7"
LIBAPI = 0
LIBPATCH = 1
PYDEPS = ["cryptography>=42"]

_MAX_COMMON_NAME = 64  # ub-common-name in RFC 5280


class PostgreSQLTLSError(Exception):
    """Raised when a key, request or certificate is malformed or the files do not fit together."""


def generate_private_key(key_size: int = 2048) -> str:
    """Return a new unencrypted RSA private key in PKCS#8 PEM form."""
    if key_size < 2048:
        raise PostgreSQLTLSError("RSA keys shorter than 2048 bits are refused")
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _load_private_key(pem: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as e:
        raise PostgreSQLTLSError(f"private key is not an unencrypted PEM key: {e}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise PostgreSQLTLSError("private key must be RSA or ECDSA")
    return key


def build_csr(
    private_key_pem: str,
    common_name: str,
    sans_dns: Iterable[str] = (),
    sans_ip: Iterable[str] = (),
) -> str:
    """Return a PEM certificate signing request for ``common_name`` and the given SANs."""
    if not common_name or len(common_name) > _MAX_COMMON_NAME or "\x00" in common_name:
        raise PostgreSQLTLSError("common name must have 1 to 64 characters and no NUL")
    names: list[x509.GeneralName] = []
    for dns in sans_dns:
        if not dns or any(ch.isspace() or ch == "\x00" for ch in dns):
            raise PostgreSQLTLSError(f"invalid DNS name {dns!r}")
        names.append(x509.DNSName(dns))
    for ip in sans_ip:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise PostgreSQLTLSError(f"invalid IP address {ip!r}") from None
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(_load_private_key(private_key_pem), hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _load_certificates(pem: str, what: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise PostgreSQLTLSError(f"{what} is not a PEM certificate") from None
    return certificates


def _public_der(key: object) -> bytes:
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise PostgreSQLTLSError("only RSA and ECDSA keys are supported")
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class TLSFiles:
    """The PEM texts PostgreSQL needs: CA bundle, certificate (chain) and private key."""

    ca: str
    cert: str
    key: str

    def validate(self, now: datetime.datetime | None = None) -> None:
        """Check that the files parse, the certificate matches the key, is current and chains.

        The leaf certificate (the first in ``cert``) must carry the key's public key, be valid
        at ``now`` (default: the current time), and be signed by a certificate of the chain
        that follows it in ``cert`` or of the ``ca`` bundle.

        Raises:
            PostgreSQLTLSError: with the reason, never including the private key.
        """
        chain = _load_certificates(self.cert, "certificate")
        authorities = _load_certificates(self.ca, "CA")
        leaf = chain[0]
        key = _load_private_key(self.key)
        if _public_der(leaf.public_key()) != _public_der(key.public_key()):
            raise PostgreSQLTLSError("certificate does not match the private key")
        now = now or datetime.datetime.now(datetime.timezone.utc)
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            raise PostgreSQLTLSError("certificate is expired or not yet valid")
        if not any(_issued_by(leaf, issuer) for issuer in [*chain[1:], *authorities]):
            raise PostgreSQLTLSError("certificate is not issued by the CA or its chain")


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True

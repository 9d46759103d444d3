"""Unit tests of the postgresql_tls charm library."""

from __future__ import annotations

import datetime
import ipaddress
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from charms.postgresql_k8s.v0 import postgresql_tls as tls

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _certificate(
    subject: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    issuer: str,
    signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + DAY,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki() -> dict[str, str]:
    """A CA, an intermediate, and keys and certificates issued by each."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test-ca", ca_key.public_key(), "test-ca", ca_key, ca=True)
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = _certificate("test-mid", mid_key.public_key(), "test-ca", ca_key, ca=True)
    key_pem = tls.generate_private_key()
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    leaf = _certificate("pg-0", key.public_key(), "test-ca", ca_key)
    via_mid = _certificate("pg-1", key.public_key(), "test-mid", mid_key)
    expired = _certificate(
        "pg-old",
        key.public_key(),
        "test-ca",
        ca_key,
        not_before=NOW - 3 * DAY,
        not_after=NOW - DAY,
    )
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _certificate("test-ca", other_ca_key.public_key(), "test-ca", other_ca_key, ca=True)
    return {
        "ca": _pem(ca),
        "other_ca": _pem(other_ca),
        "key": key_pem,
        "leaf": _pem(leaf),
        "chain": _pem(via_mid) + _pem(mid),
        "via_mid_only": _pem(via_mid),
        "expired": _pem(expired),
        "other_key": tls.generate_private_key(),
    }


def test_generate_private_key_is_rsa_pkcs8():
    pem = tls.generate_private_key()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert tls.generate_private_key() != pem


def test_short_keys_refused():
    with pytest.raises(tls.PostgreSQLTLSError):
        tls.generate_private_key(1024)


def test_build_csr_carries_names_and_is_signed(pki: dict[str, str]):
    pem = tls.build_csr(
        pki["key"],
        "pg-0",
        sans_dns=["pg-0.pg-endpoints", "localhost"],
        sans_ip=["10.1.2.3", "::1"],
    )
    csr = x509.load_pem_x509_csr(pem.encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pg-0"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["pg-0.pg-endpoints", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
    ]
    key = serialization.load_pem_private_key(pki["key"].encode(), None)
    assert csr.public_key() == key.public_key()


def test_build_csr_without_sans():
    csr = x509.load_pem_x509_csr(tls.build_csr(tls.generate_private_key(), "pg").encode())
    with pytest.raises(x509.ExtensionNotFound):
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)


@pytest.mark.parametrize(
    ("common_name", "dns", "ip"),
    [
        ("", [], []),
        ("x" * 65, [], []),
        ("a\x00b", [], []),
        ("pg", ["bad name"], []),
        ("pg", [""], []),
        ("pg", [], ["10.0.0.256"]),
        ("pg", [], ["not-an-ip"]),
    ],
)
def test_build_csr_rejects_bad_input(common_name: str, dns: list[str], ip: list[str]):
    with pytest.raises(tls.PostgreSQLTLSError):
        tls.build_csr(tls.generate_private_key(), common_name, dns, ip)


def test_build_csr_rejects_bad_key():
    with pytest.raises(tls.PostgreSQLTLSError, match="private key"):
        tls.build_csr("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", "pg")


def test_validate_accepts_matching_files(pki: dict[str, str]):
    tls.TLSFiles(ca=pki["ca"], cert=pki["leaf"], key=pki["key"]).validate()
    # Issued by an intermediate shipped in the certificate file.
    tls.TLSFiles(ca=pki["ca"], cert=pki["chain"], key=pki["key"]).validate()
    # A CA bundle may hold several authorities.
    tls.TLSFiles(ca=pki["other_ca"] + pki["ca"], cert=pki["leaf"], key=pki["key"]).validate()


@pytest.mark.parametrize(
    ("ca", "cert", "key", "reason"),
    [
        ("ca", "leaf", "other_key", "does not match"),
        ("ca", "expired", "key", "expired"),
        ("other_ca", "leaf", "key", "not issued"),
        ("ca", "via_mid_only", "key", "not issued"),
    ],
)
def test_validate_rejects_mismatches(
    pki: dict[str, str], ca: str, cert: str, key: str, reason: str
):
    files = tls.TLSFiles(ca=pki[ca], cert=pki[cert], key=pki[key])
    with pytest.raises(tls.PostgreSQLTLSError, match=reason) as info:
        files.validate()
    assert "PRIVATE KEY" not in str(info.value)


def test_validate_rejects_garbage(pki: dict[str, str]):
    with pytest.raises(tls.PostgreSQLTLSError, match="certificate"):
        tls.TLSFiles(ca=pki["ca"], cert="garbage", key=pki["key"]).validate()
    with pytest.raises(tls.PostgreSQLTLSError, match="CA"):
        tls.TLSFiles(ca="", cert=pki["leaf"], key=pki["key"]).validate()
    with pytest.raises(tls.PostgreSQLTLSError, match="private key"):
        tls.TLSFiles(ca=pki["ca"], cert=pki["leaf"], key=pki["leaf"]).validate()


def test_validate_at_a_given_time(pki: dict[str, str]):
    files = tls.TLSFiles(ca=pki["ca"], cert=pki["leaf"], key=pki["key"])
    with pytest.raises(tls.PostgreSQLTLSError, match="not yet valid"):
        files.validate(now=NOW - 2 * DAY)


def test_library_metadata():
    assert re.fullmatch(r"[0-9a-f]{32}", tls.LIBID)
    assert tls.LIBAPI == 0 and tls.LIBPATCH >= 1
    assert tls.PYDEPS == ["cryptography>=42"]

"""A real S3-compatible server for tests: moto on plain HTTP behind stunnel for HTTPS.

moto's own TLS closes connections without close_notify, which pgBackRest 2.45 treats as an error
on every upload, so moto listens on plain HTTP on loopback and stunnel terminates TLS in front of
it with a certificate for a DNS name (pgBackRest 2.45 does not match IP-address SANs). Both
processes die with the test process (parent-death signal) and are stopped on teardown.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import functools
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

START_TIMEOUT = 20.0
REGION = "us-east-1"
_PR_SET_PDEATHSIG = 1


# --- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: str
    key_pem: str


class CertificateAuthority:
    """A throwaway CA that issues server and client certificates (ECDSA P-256, one day)."""

    def __init__(self, name: str = "test-ca"):
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(
        self, common_name: str, dns_names: tuple[str, ...] = (), ips: tuple[str, ...] = ()
    ) -> Issued:
        """A certificate usable both as a TLS server and as a TLS client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode())


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


# --- processes ----------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when the test process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own group: teardown signals the whole group
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, before exec
        )


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> bool:
    """True once ready(); False if the process exited first (e.g. its port was taken)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not start within {START_TIMEOUT}s")


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


# --- the server ---------------------------------------------------------------------------------


class S3Server:
    """moto (HTTP, 127.0.0.1) fronted by stunnel (HTTPS, `listen_address`).

    `endpoint` is what an S3 client is given: https://<dns_name>:<port>. `dns_name` must resolve to
    `listen_address` where the client runs (`localhost` on the host; an /etc/hosts entry in a pod).
    With `auth=True`, moto checks every request's signature against an IAM user made at start,
    whose key pair is `access_key`/`secret_key`; otherwise moto accepts any key pair.
    Buckets are addressed path-style (`s3-uri-style: path`) whatever `dns_name` is.
    """

    def __init__(
        self, *, listen_address: str = "127.0.0.1", dns_name: str = "localhost", auth: bool = False
    ):
        self.listen_address = listen_address
        self.dns_name = dns_name
        self.auth = auth
        self.region = REGION
        self.access_key = "AKIA" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.port = 0
        self._moto_port = 0
        self._dir: Path | None = None
        self._moto: subprocess.Popen[bytes] | None = None
        self._stunnel: subprocess.Popen[bytes] | None = None
        self.ca = CertificateAuthority("s3-test-ca")
        self.ca_pem = self.ca.cert_pem

    # lifecycle

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """HTTPS endpoint, as the s3 interface carries it."""
        return f"https://{self.dns_name}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate, world-readable (pgBackRest runs as postgres)."""
        return self._workdir / "ca.pem"

    @property
    def _workdir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("S3Server is not started")
        return self._dir

    def start(self) -> None:
        """Start moto then stunnel; everything started is stopped if a later step fails."""
        self._dir = Path(tempfile.mkdtemp(prefix="s3test-", dir="/tmp"))
        self._dir.chmod(0o755)
        try:
            self.ca_file.write_text(self.ca_pem)
            self.ca_file.chmod(0o644)
            self._start_moto()
            if self.auth:
                self._enable_auth()
            self._start_stunnel()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both processes (stunnel first) and remove the working directory."""
        _stop(self._stunnel)
        _stop(self._moto)
        self._stunnel = self._moto = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def log_text(self) -> str:
        """Moto's and stunnel's output, for diagnostics."""
        logs = [self._workdir / "moto.log", self._workdir / "stunnel.log"]
        return "\n".join(p.read_text(errors="replace") for p in logs if p.exists())

    def _start_moto(self) -> None:
        # Path-style only: otherwise moto reads a dotted host name (s3.test) as a bucket name.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true"}
        for _attempt in range(3):  # another process may take the free port before moto binds it
            self._moto_port = _free_port("127.0.0.1")
            argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1"]
            self._moto = _spawn(
                [*argv, "-p", str(self._moto_port)], self._workdir / "moto.log", env
            )
            if _wait_until(self._moto_ready, self._moto, "moto"):
                return
        raise RuntimeError(f"moto could not start:\n{self.log_text()[-2000:]}")

    def _moto_ready(self) -> bool:
        try:
            return requests.get(f"{self._moto_url}/moto-api/", timeout=1).ok
        except requests.RequestException:
            return False

    def _start_stunnel(self) -> None:
        issued = self.ca.issue(
            self.dns_name, dns_names=(self.dns_name,), ips=(self.listen_address,)
        )
        cert, key = self._workdir / "server.pem", self._workdir / "server.key"
        cert.write_text(issued.cert_pem)
        key.write_text(issued.key_pem)
        key.chmod(0o600)
        for _attempt in range(3):
            self.port = _free_port(self.listen_address)
            conf = self._workdir / "stunnel.conf"
            conf.write_text(
                "foreground = yes\npid =\ndebug = warning\n"
                f"[s3]\naccept = {self.listen_address}:{self.port}\n"
                f"connect = 127.0.0.1:{self._moto_port}\ncert = {cert}\nkey = {key}\n"
            )
            self._stunnel = _spawn(["stunnel4", str(conf)], self._workdir / "stunnel.log")
            ready = functools.partial(_accepts, self.listen_address, self.port)
            if _wait_until(ready, self._stunnel, "stunnel"):
                return
        raise RuntimeError(f"stunnel could not start:\n{self.log_text()[-2000:]}")

    def _enable_auth(self) -> None:
        """Make an IAM user allowed every S3 action, then turn signature checks on for all."""
        iam = boto3.client(
            "iam",
            endpoint_url=self._moto_url,
            region_name=self.region,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",  # noqa: S106 - moto accepts any key before auth is on
        )
        iam.create_user(UserName="backup")
        iam.put_user_policy(
            UserName="backup",
            PolicyName="s3-all",
            PolicyDocument='{"Version":"2012-10-17","Statement":'
            '[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
        )
        key = iam.create_access_key(UserName="backup")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        # moto checks signatures once its request count reaches this number: 0 = from now on.
        requests.post(f"{self._moto_url}/moto-api/reset-auth", data=b"0", timeout=5)

    # S3 operations (straight to moto over HTTP, signed with the good key pair)

    @property
    def _moto_url(self) -> str:
        return f"http://127.0.0.1:{self._moto_port}"

    def client(self) -> Any:
        """A boto3 S3 client that talks to moto directly."""
        return boto3.client(
            "s3",
            endpoint_url=self._moto_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def create_bucket(self, name: str) -> None:
        """Create a bucket (the region is us-east-1, so no location constraint)."""
        self.client().create_bucket(Bucket=name)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under prefix (a leading '/' is ignored, as S3 keys have none)."""
        paginator = self.client().get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix.lstrip("/")):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def relation_data(self, bucket: str, path: str = "/") -> dict[str, Any]:
        """What an s3-integrator would publish for this server, in the s3 interface's names."""
        return {
            "bucket": bucket,
            "endpoint": self.endpoint,
            "region": self.region,
            "path": path,
            "s3-uri-style": "path",
            "access-key": self.access_key,
            "secret-key": self.secret_key,
            "tls-ca-chain": [self.ca_pem],
        }


@contextlib.contextmanager
def s3_server(
    *, listen_address: str = "127.0.0.1", dns_name: str = "localhost", auth: bool = False
) -> Iterator[S3Server]:
    """Run an S3Server for the duration of the ``with`` block."""
    with S3Server(listen_address=listen_address, dns_name=dns_name, auth=auth) as server:
        yield server

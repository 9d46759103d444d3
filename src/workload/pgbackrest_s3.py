"""The s3 interface's fields as pgBackRest settings, each validated whole before anything renders.

Values arrive JSON-decoded (the s3 library decodes every field), so a provider can deliver real
line breaks, NULs, numbers, lists or objects. Every check here matches the whole string, and an
`S3Settings` cannot be built from a value that would not render: the renderer never meets one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from cryptography import x509

from workload.pgbackrest_info import (
    SETTING_ACCESS_KEY,
    SETTING_BUCKET,
    SETTING_CA_CHAIN,
    SETTING_ENDPOINT,
    SETTING_PATH,
    SETTING_REGION,
    SETTING_SECRET_KEY,
    SETTING_URI_STYLE,
)

UriStyle = Literal["path", "host"]

# What AWS signs with when no region is given; MinIO and Ceph accept it too.
DEFAULT_REGION = "us-east-1"
HTTPS_PORT = 443
MAX_PORT = 65535

# AWS's naming rules, without dots: pgBackRest refuses a dotted bucket whenever it verifies TLS
# (measured with 2.45, path-style or not), and the charm always verifies.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[A-Za-z0-9-]{1,64}")
_SHOWN_MAX = 32
# Printable ASCII without spaces: pgBackRest's INI file has no quoting and trims values.
_TOKEN = re.compile(r"[\x21-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)
_AUTHORITY = re.compile(r"(?P<authority>[^/?#]*)(?P<tail>.*)", re.DOTALL)
_HOST_PORT = re.compile(
    r"(?:\[(?P<ipv6>[^\]]*)\]|(?P<host>[^:\[\]]*))(?::(?P<port>.*))?", re.DOTALL
)
_PORT = re.compile(r"[0-9]{1,5}")
_IPV6_TEXT = re.compile(r"[0-9A-Fa-f:.]+")
# Only certificate blocks and the whitespace between them: anything else would reach the file
# pgBackRest reads as its CA store.
_PEM_CHAIN = re.compile(
    r"\s*(?:-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----\s*)+", re.ASCII
)


class InvalidS3SettingsError(ValueError):
    """Raised when a value from the s3 interface cannot configure pgBackRest.

    Attributes:
        setting: the s3 interface's name of the offending field (e.g. `s3-uri-style`).
        message: why it was refused, for the user.
    """

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where pgBackRest connects: always HTTPS, to `host` (a name or an address) and `port`."""

    host: str
    port: int


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """Where and how pgBackRest stores the repository (the s3 interface's fields).

    Validated on construction (InvalidS3SettingsError), so every instance renders.
    """

    bucket: str
    endpoint: str
    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    region: str = DEFAULT_REGION
    path: str = "/"  # the repository's path inside the bucket
    uri_style: UriStyle = "host"
    ca_chain: str | None = None  # PEM; None: the system's CAs
    tls_verify: bool = True

    def __post_init__(self) -> None:
        self.validate()

    @property
    def host(self) -> str:
        """The endpoint's host, which pgBackRest wants without scheme or port."""
        return parse_endpoint(self.endpoint).host

    @property
    def port(self) -> int:
        """The endpoint's port (443 unless given)."""
        return parse_endpoint(self.endpoint).port

    @property
    def repo_path(self) -> str:
        """The path as pgBackRest wants it: absolute, no trailing slash."""
        inner = self.path.strip("/")
        return "/" + inner if inner else "/"

    def validate(self) -> None:
        """Raise InvalidS3SettingsError naming the first field pgBackRest could not use."""
        _validate_bucket(self.bucket)
        _validate_region(self.region)
        parse_endpoint(self.endpoint)
        _validate_path(self.path)
        if self.uri_style not in ("path", "host"):
            raise InvalidS3SettingsError(SETTING_URI_STYLE, "must be 'path' or 'host'")
        for setting, key in (
            (SETTING_ACCESS_KEY, self.access_key),
            (SETTING_SECRET_KEY, self.secret_key),
        ):
            _check(setting, key, _TOKEN, "must be set, printable, without spaces")
        if self.ca_chain is not None:
            _validate_ca_chain(self.ca_chain)


def s3_settings(data: Mapping[str, Any]) -> S3Settings:
    """Validated settings from the s3 interface's fields (the `s3-uri-style` naming)."""
    fields = {
        setting: _text(setting, data.get(setting))
        for setting in (
            SETTING_BUCKET,
            SETTING_ACCESS_KEY,
            SETTING_SECRET_KEY,
            SETTING_REGION,
            SETTING_ENDPOINT,
            SETTING_PATH,
            SETTING_URI_STYLE,
        )
    }
    for setting in (SETTING_BUCKET, SETTING_ACCESS_KEY, SETTING_SECRET_KEY):
        if not fields[setting]:
            raise InvalidS3SettingsError(setting, "missing")
    region = fields[SETTING_REGION] or DEFAULT_REGION
    # Checked before it names AWS's endpoint, so that a bad region is reported as the region.
    _validate_region(region)
    return S3Settings(
        bucket=str(fields[SETTING_BUCKET]),
        # No endpoint: AWS itself, whose endpoint is per region.
        endpoint=fields[SETTING_ENDPOINT] or f"https://s3.{region}.amazonaws.com",
        access_key=str(fields[SETTING_ACCESS_KEY]),
        secret_key=str(fields[SETTING_SECRET_KEY]),
        region=region,
        path=fields[SETTING_PATH] or "/",
        uri_style=cast("UriStyle", fields[SETTING_URI_STYLE] or "host"),
        ca_chain=_ca_chain(data.get(SETTING_CA_CHAIN)),
    )


def _text(setting: str, value: object) -> str | None:
    """A field as the string the provider meant; refuses what JSON decoding turned into another type.

    An integer is kept: JSON decodes only a plain decimal string to one, so its digits are the
    provider's. A float, boolean, list or object has lost its spelling (`1e3`, `true`): refused.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    kind = "a boolean" if isinstance(value, bool) else f"a JSON {type(value).__name__}"
    raise InvalidS3SettingsError(setting, f"must be a string, not {kind}")


def _ca_chain(value: object) -> str | None:
    """The interface carries a list of PEM certificates; a single PEM string is accepted too."""
    if value is None or value in ("", []):
        return None
    if isinstance(value, (list, tuple)):
        items = cast("Sequence[object]", value)
        if not all(isinstance(item, str) for item in items):
            raise InvalidS3SettingsError(SETTING_CA_CHAIN, "must be a list of PEM strings")
        return "\n".join(cast("str", item).strip(" \t\r\n") for item in items) + "\n"
    if isinstance(value, str):
        return value
    raise InvalidS3SettingsError(SETTING_CA_CHAIN, "must be a list of PEM strings")


def _check(setting: str, value: str, pattern: re.Pattern[str], message: str) -> None:
    _refuse_control(setting, value)
    if not pattern.fullmatch(value):
        raise InvalidS3SettingsError(setting, message)


def _refuse_control(setting: str, value: str) -> None:
    if _CONTROL.search(value):
        raise InvalidS3SettingsError(setting, "holds a line break or another control character")


def parse_endpoint(endpoint: str) -> Endpoint:
    """The host and port of an S3 endpoint: `https://host[:port]`, or a bare `host[:port]`.

    Nothing is dropped or rewritten: credentials, a path, a query, port 0 and other schemes are
    refused (InvalidS3SettingsError) rather than ignored.
    """
    _refuse_control(SETTING_ENDPOINT, endpoint)
    if not endpoint.isascii() or " " in endpoint:
        raise InvalidS3SettingsError(SETTING_ENDPOINT, "must be ASCII, without spaces")
    rest = endpoint
    if scheme := _SCHEME.fullmatch(endpoint):
        name, rest = scheme["scheme"].lower(), scheme["rest"]
        if name == "http":
            raise InvalidS3SettingsError(
                SETTING_ENDPOINT, "pgBackRest reaches S3 over https:// only"
            )
        if name != "https":
            raise InvalidS3SettingsError(SETTING_ENDPOINT, f"must be an https:// URL, not {name}")
    parts = _AUTHORITY.fullmatch(rest)
    authority, tail = (parts["authority"], parts["tail"]) if parts else ("", rest)
    if "@" in authority:
        raise InvalidS3SettingsError(SETTING_ENDPOINT, "must not hold credentials (user@)")
    if tail not in ("", "/"):
        raise InvalidS3SettingsError(SETTING_ENDPOINT, "must not have a path, query or fragment")
    split = _HOST_PORT.fullmatch(authority)
    if split is None or (split["ipv6"] is None and authority.count(":") > 1):
        raise InvalidS3SettingsError(SETTING_ENDPOINT, "expected https://host[:port], [IPv6]")
    host = split["ipv6"] if split["ipv6"] is not None else split["host"]
    if not _valid_host(host, bracketed=split["ipv6"] is not None):
        raise InvalidS3SettingsError(SETTING_ENDPOINT, "not a host name or IP address")
    return Endpoint(host, _port(split["port"]))


def _valid_host(host: str, bracketed: bool) -> bool:
    if bracketed:  # no zone index (`%eth0`): it names an interface of this pod only
        return bool(_IPV6_TEXT.fullmatch(host)) and _is_ip(host, 6)
    if all(label.isdigit() for label in host.split(".")):  # looks numeric: must be an IPv4
        return _is_ip(host, 4)
    return bool(_DNS_NAME.fullmatch(host)) and not host.rsplit(".", 1)[-1].isdigit()


def _port(text: str | None) -> int:
    if text is None:
        return HTTPS_PORT
    port = int(text) if _PORT.fullmatch(text) else 0
    if not 1 <= port <= MAX_PORT:
        raise InvalidS3SettingsError(SETTING_ENDPOINT, f"the port must be 1 to {MAX_PORT}")
    return port


def _is_ip(text: str, version: int) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.version == version


def _validate_bucket(bucket: str) -> None:
    _check(
        SETTING_BUCKET,
        bucket,
        _BUCKET,
        "3-63 lowercase letters, digits or '-' (no dots), starting and ending with one",
    )


def _validate_region(region: str) -> None:
    # Not a secret: the message quotes it (escaped by repr, and short enough for a status line).
    shown = repr(region) if len(region) <= _SHOWN_MAX else repr(region[:_SHOWN_MAX]) + "..."
    _check(SETTING_REGION, region, _REGION, f"not a region name: {shown}")


def _validate_path(path: str) -> None:
    _check(SETTING_PATH, path, _TOKEN, "must be a path without spaces")
    inner = path.strip("/")
    parts = inner.split("/") if inner else []
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidS3SettingsError(SETTING_PATH, "must be a path without '.', '..' or '//'")


def _validate_ca_chain(pem: str) -> None:
    if not _PEM_CHAIN.fullmatch(pem):
        raise InvalidS3SettingsError(
            SETTING_CA_CHAIN, "must hold PEM certificates and nothing else"
        )
    try:
        x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise InvalidS3SettingsError(SETTING_CA_CHAIN, "not PEM certificates") from None

"""pgBackRest's configuration, command lines, `info` parsing and error classification."""

from __future__ import annotations

import configparser
import dataclasses
import datetime
import json
import random
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from workload import layout
from workload import pgbackrest as pb

CONF = "/var/lib/postgresql/conf/pgbackrest.conf"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
ACCESS = "AKIAIOSFODNN7EXAMPLE"


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


CA = _ca_pem()


def relation_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "bucket": "backups",
        "endpoint": "https://s3.example.com:9000",
        "region": "eu-west-1",
        "path": "/team/pg/",
        "s3-uri-style": "path",
        "access-key": ACCESS,
        "secret-key": SECRET,
        "tls-ca-chain": [CA],
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def parse_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


# --- S3 settings --------------------------------------------------------------------------------


def test_settings_from_the_s3_interface():
    s3 = pb.s3_settings(relation_data())
    assert (s3.host, s3.port, s3.repo_path, s3.uri_style) == (
        "s3.example.com",
        9000,
        "/team/pg",
        "path",
    )
    assert s3.ca_chain and "BEGIN CERTIFICATE" in s3.ca_chain
    assert SECRET not in repr(s3) and ACCESS not in repr(s3)


def test_defaults_fill_what_the_interface_may_leave_out():
    s3 = pb.s3_settings(
        relation_data(endpoint=None, region="", path=None, **{"s3-uri-style": None})
    )
    assert (s3.host, s3.port, s3.region, s3.repo_path, s3.uri_style) == (
        "s3.us-east-1.amazonaws.com",
        443,
        "us-east-1",
        "/",
        "host",
    )


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"bucket": None}, "bucket"),
        ({"bucket": "Backups"}, "bucket"),
        ({"bucket": "ab"}, "bucket"),
        ({"bucket": "a..b"}, "bucket"),
        ({"bucket": "192.168.1.1"}, "bucket"),
        ({"bucket": "-backups"}, "bucket"),
        ({"endpoint": "http://s3.example.com"}, "endpoint"),
        ({"endpoint": "ftp://s3.example.com"}, "endpoint"),
        ({"endpoint": "https://s3.example.com/prefix"}, "endpoint"),
        ({"endpoint": "https://s3.example.com:port"}, "endpoint"),
        ({"endpoint": "https://bad_host"}, "endpoint"),
        ({"region": "eu west"}, "region"),
        ({"path": "/a/../b"}, "path"),
        ({"path": "/a b"}, "path"),
        ({"path": "/a\nrepo1-type=posix"}, "path"),
        ({"s3-uri-style": "virtual"}, "s3-uri-style"),
        ({"access-key": None}, "access-key"),
        ({"access-key": "AKIA EXAMPLE"}, "access-key"),
        ({"secret-key": ""}, "secret-key"),
        ({"secret-key": "a\nb"}, "secret-key"),
        ({"tls-ca-chain": ["not a certificate"]}, "tls-ca-chain"),
    ],
)
def test_invalid_settings_name_the_field(changes: dict[str, Any], setting: str):
    with pytest.raises(pb.InvalidS3SettingsError) as refused:
        pb.s3_settings(relation_data(**changes))
    assert refused.value.setting == setting
    assert str(refused.value).startswith(f"{setting}: ")
    assert SECRET not in str(refused.value)


def test_bare_host_and_ip_endpoints_are_https():
    assert pb.s3_settings(relation_data(endpoint="minio.local")).port == 443
    s3 = pb.s3_settings(relation_data(endpoint="https://10.1.2.3:9000"))
    assert (s3.host, s3.port) == ("10.1.2.3", 9000)


def test_ca_chain_as_one_pem_string():
    assert pb.s3_settings(relation_data(**{"tls-ca-chain": CA})).ca_chain == CA


# Every field of the s3 interface as it may arrive: the library JSON-decodes each value, so a
# provider can send real line breaks, NULs and non-string types.
S3_FIELDS = (
    "bucket",
    "endpoint",
    "region",
    "path",
    "s3-uri-style",
    "access-key",
    "secret-key",
    "tls-ca-chain",
)
HOSTILE_CHARACTERS = {
    "trailing LF": ("", "\n"),
    "trailing CRLF": ("", "\r\n"),
    "leading LF": ("\n", ""),
    "CR": ("", "\rx"),
    "NUL": ("", "\x00"),
    "ESC": ("", "\x1b[0m"),
    "DEL": ("", "\x7f"),
    "NEL": ("", "\x85"),
    "LINE SEPARATOR": ("", "\u2028"),
    "NO-BREAK SPACE": ("", "\u00a0"),
    "injected option": ("", "\nrepo1-type=posix"),
}


def _with_hostile(field: str, before: str, after: str) -> Any:
    value = relation_data()[field]
    if field == "tls-ca-chain":
        return [before + CA + after]
    return before + value + after


# Line breaks around PEM blocks are part of PEM: the CA chain is the one field they may end.
PEM_WHITESPACE = ("trailing LF", "trailing CRLF", "leading LF")


@pytest.mark.parametrize(
    ("field", "case"),
    [
        (field, case)
        for field in S3_FIELDS
        for case in HOSTILE_CHARACTERS
        if not (field == "tls-ca-chain" and case in PEM_WHITESPACE)
    ],
)
def test_line_breaks_and_control_characters_are_refused_in_every_field(field: str, case: str):
    hostile = _with_hostile(field, *HOSTILE_CHARACTERS[case])
    with pytest.raises(pb.InvalidS3SettingsError) as refused:
        pb.s3_settings(relation_data(**{field: hostile}))
    assert refused.value.setting == field
    assert SECRET not in str(refused.value) and ACCESS not in str(refused.value)


@pytest.mark.parametrize("case", PEM_WHITESPACE)
def test_line_breaks_around_a_pem_chain_are_pem(case: str):
    _read_back("tls-ca-chain", _with_hostile("tls-ca-chain", *HOSTILE_CHARACTERS[case]))


@pytest.mark.parametrize("field", S3_FIELDS)
@pytest.mark.parametrize("value", [True, 1.5, 1e3, {"a": "b"}, [["nested"]], [1]])
def test_values_json_decoding_turned_into_other_types_are_refused(field: str, value: Any):
    if field != "tls-ca-chain" and isinstance(value, list):
        value = ["backups"]
    with pytest.raises(pb.InvalidS3SettingsError) as refused:
        pb.s3_settings(relation_data(**{field: value}))
    assert refused.value.setting == field


def test_integers_keep_the_providers_digits():
    # JSON decodes only a plain decimal string to an integer: its digits are what was sent.
    s3 = pb.s3_settings(relation_data(bucket=123, path=2024, **{"secret-key": 12345678}))
    conf = parse_ini(pb.render_config("pg", s3, pb.PgInstance()))["global"]
    assert (conf["repo1-s3-bucket"], conf["repo1-path"]) == ("123", "/2024")
    assert conf["repo1-s3-key-secret"] == "12345678"


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("https://user:secret@s3.example.com", "credentials"),
        ("https://user@s3.example.com:9000", "credentials"),
        ("https://:pw@s3.example.com", "credentials"),
        ("https://s3.example.com:0", "port"),
        ("https://s3.example.com:65536", "port"),
        ("https://s3.example.com:99999", "port"),
        ("https://s3.example.com:", "port"),
        ("https://s3.example.com:+443", "port"),
        ("https://s3.example.com: 443", "spaces"),
        ("https://s3.example.com:0443x", "port"),
        ("https://s3.example.com:443:443", "expected"),
        ("http://s3.example.com", "https:// only"),
        ("HTTP://s3.example.com", "https:// only"),
        ("ftp://s3.example.com", "not ftp"),
        ("s3://backups", "not s3"),
        ("file:///etc/passwd", "not file"),
        ("https://s3.example.com/prefix", "path"),
        ("https://s3.example.com/?x=1", "path"),
        ("https://s3.example.com?x=1", "path"),
        ("https://s3.example.com#fragment", "path"),
        ("//s3.example.com", "path"),
        ("https://", "host"),
        ("https://:9000", "host"),
        ("https://bad_host", "host"),
        ("https://-s3.example.com", "host"),
        ("https://s3-.example.com", "host"),
        ("https://s3..example.com", "host"),
        ("https://s3.example.com.", "host"),
        ("https://" + "a" * 64 + ".com", "host"),
        ("https://" + ".".join(["a" * 63] * 4) + ".com", "host"),
        ("https://exämple.com", "ASCII"),
        ("https://s3%2eexample.com", "host"),
        ("https://1.2.3.999", "host"),
        ("https://010.1.1.1", "host"),
        ("https://1.2.3", "host"),
        ("https://[::1", "expected"),
        ("https://::1", "expected"),
        ("https://[::1]x", "expected"),
        ("https://[not-an-address]", "host"),
        ("https://[fe80::1%eth0]", "host"),
        ("https://[1.2.3.4]", "host"),
        ("https:/s3.example.com", "path"),
        ("https://s3.example.com\\@evil.com", "credentials"),
        (" https://s3.example.com", "spaces"),
        ("https://s3.example .com", "spaces"),
    ],
)
def test_endpoints_are_refused_not_rewritten(endpoint: str, why: str):
    with pytest.raises(pb.InvalidS3SettingsError) as refused:
        pb.s3_settings(relation_data(endpoint=endpoint))
    assert refused.value.setting == "endpoint"
    assert why in refused.value.message
    assert "secret" not in str(refused.value)  # the password in a URL is never repeated


@pytest.mark.parametrize(
    ("endpoint", "host", "port"),
    [
        ("HTTPS://S3.Example.COM", "S3.Example.COM", 443),
        ("https://s3.example.com/", "s3.example.com", 443),
        ("s3.example.com:9000", "s3.example.com", 9000),
        ("https://10.1.2.3:1", "10.1.2.3", 1),
        ("https://10.1.2.3:65535", "10.1.2.3", 65535),
        ("https://[::1]:9000", "::1", 9000),
        ("https://[2001:db8::7]", "2001:db8::7", 443),
        ("https://localhost", "localhost", 443),
        ("https://xn--exmple-cua.com", "xn--exmple-cua.com", 443),
        ("https://" + ".".join(["a" * 63] * 3) + ".com", ".".join(["a" * 63] * 3) + ".com", 443),
        ("https://s3.example.com:00443", "s3.example.com", 443),
    ],
)
def test_endpoints_pgbackrest_is_given_as_host_and_port(endpoint: str, host: str, port: int):
    s3 = pb.s3_settings(relation_data(endpoint=endpoint))
    conf = parse_ini(pb.render_config("pg", s3, pb.PgInstance()))["global"]
    assert (conf["repo1-s3-endpoint"], conf["repo1-storage-port"]) == (host, str(port))


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"bucket": "my.backups"}, "bucket"),
        ({"bucket": "a" * 64}, "bucket"),
        ({"bucket": "backups-"}, "bucket"),
        ({"path": "/a/./b"}, "path"),
        ({"path": "/a//b"}, "path"),
        ({"path": ".."}, "path"),
        ({"path": "/é"}, "path"),
        ({"region": "eu-west-1 "}, "region"),
        ({"region": "a" * 65}, "region"),
        ({"s3-uri-style": "Path"}, "s3-uri-style"),
        ({"s3-uri-style": " path"}, "s3-uri-style"),
        ({"access-key": " AKIA"}, "access-key"),
        ({"secret-key": "\t"}, "secret-key"),
        ({"tls-ca-chain": [CA, "junk"]}, "tls-ca-chain"),
        ({"tls-ca-chain": "junk\n" + CA}, "tls-ca-chain"),
        ({"tls-ca-chain": CA.replace("CERTIFICATE", "PRIVATE KEY")}, "tls-ca-chain"),
        ({"tls-ca-chain": "  "}, "tls-ca-chain"),
    ],
)
def test_values_pgbackrest_would_refuse_or_misread_name_the_field(
    changes: dict[str, Any], setting: str
):
    with pytest.raises(pb.InvalidS3SettingsError) as refused:
        pb.s3_settings(relation_data(**changes))
    assert refused.value.setting == setting


# Accepted values as awkward as each field allows: every one must render and read back intact.
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
AWKWARD_VALUES: dict[str, list[Any]] = {
    "bucket": ["abc", "a" * 63, "0-9", "123"],
    "region": ["x", "a" * 64, "-", "us-east-1"],
    "path": [
        "/",
        "",
        "a",
        "/" + PUNCTUATION.replace("/", "").replace(".", ""),
        "#a/;b/=c/",
        "/a/",
    ],
    "s3-uri-style": ["path", "host"],
    "access-key": ["=", "#", ";", "[global]", PUNCTUATION, "a=b=c", "\\", "'\"'"],
    "secret-key": [PUNCTUATION, "=leading", "trailing=", "#comment", ";semi", "%(x)s", "${X}"],
    "tls-ca-chain": [[CA], [CA, CA], CA, CA.replace("\n", "\r\n"), f"\n\n{CA}\n\n{CA}"],
}
INI_KEYS = {
    "bucket": "repo1-s3-bucket",
    "region": "repo1-s3-region",
    "s3-uri-style": "repo1-s3-uri-style",
    "access-key": "repo1-s3-key",
    "secret-key": "repo1-s3-key-secret",
}


def _read_back(field: str, value: Any) -> None:
    s3 = pb.s3_settings(relation_data(**{field: value}))
    text = pb.render_config("pg", s3, pb.PgInstance())  # must not raise
    conf = parse_ini(text)["global"]
    assert len(conf) == len(parse_ini(pb.render_config("pg", SETTINGS, pb.PgInstance()))["global"])
    if field in INI_KEYS:
        assert conf[INI_KEYS[field]] == str(value)
    elif field == "path":
        inner = str(value).strip("/")
        assert conf["repo1-path"] == ("/" + inner if inner else "/")
    elif field == "tls-ca-chain":
        assert x509.load_pem_x509_certificates(str(s3.ca_chain).encode())


SETTINGS = pb.s3_settings(relation_data())


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for f, values in AWKWARD_VALUES.items() for v in values]
)
def test_every_accepted_value_renders_and_reads_back_intact(field: str, value: Any):
    _read_back(field, value)


def test_fuzzed_values_are_refused_naming_the_field_or_render_intact():
    # Seeded, so a failure reproduces: each field's valid value with characters inserted that
    # include line breaks, NULs, Unicode spaces and everything INI files treat specially.
    rng = random.Random(10)
    alphabet = PUNCTUATION + "\n\r\t\x00\x0b\x0c\x1b\x7f\x85\xa0\u2028\u3000é aZ09-."
    base = relation_data()
    outcomes = {"accepted": 0, "refused": 0}
    for field in S3_FIELDS:
        for _ in range(300):
            original = CA if field == "tls-ca-chain" else str(base[field])
            chars = list(original)
            for _ in range(rng.randint(1, 3)):
                chars.insert(rng.randint(0, len(chars)), rng.choice(alphabet))
            value = "".join(chars)
            try:
                pb.s3_settings(relation_data(**{field: value}))
            except pb.InvalidS3SettingsError as refused:
                assert refused.setting == field
                outcomes["refused"] += 1
                continue
            _read_back(field, value)
            outcomes["accepted"] += 1
    print(outcomes)
    assert outcomes["accepted"] > 100 and outcomes["refused"] > 1000, outcomes


# --- configuration ------------------------------------------------------------------------------


def test_config_of_a_primary():
    s3 = pb.s3_settings(relation_data())
    text = pb.render_config("pg", s3, pb.PgInstance(), retention=pb.Retention.by_count(3, diff=2))
    conf = parse_ini(text)
    repo = dict(conf["global"])
    assert repo["repo1-type"] == "s3"
    assert repo["repo1-s3-endpoint"] == "s3.example.com"
    assert repo["repo1-storage-port"] == "9000"
    assert repo["repo1-path"] == "/team/pg"
    assert repo["repo1-s3-uri-style"] == "path"
    assert (repo["repo1-s3-key"], repo["repo1-s3-key-secret"]) == (ACCESS, SECRET)
    assert repo["repo1-storage-ca-file"] == pb.DEFAULT_PATHS.s3_ca_file
    assert repo["repo1-storage-verify-tls"] == "y"
    assert (repo["repo1-retention-full-type"], repo["repo1-retention-full"]) == ("count", "3")
    assert repo["repo1-retention-diff"] == "2"
    assert (repo["compress-type"], repo["start-fast"]) == ("zst", "y")
    for option in ("lock-path", "log-path", "spool-path"):
        assert repo[option].startswith(layout.HOME), option
    assert dict(conf["pg"]) == {
        "pg1-path": layout.PGDATA,
        "pg1-port": "5432",
        "pg1-socket-path": layout.SOCKET_DIR,
        "pg1-user": "backup",
    }
    assert not any(k.startswith("tls-server") for k in repo)


def test_config_without_ca_uses_the_system_store():
    s3 = pb.s3_settings(relation_data(**{"tls-ca-chain": None}))
    conf = parse_ini(pb.render_config("pg", s3, pb.PgInstance()))
    assert "repo1-storage-ca-file" not in conf["global"]
    assert conf["global"]["repo1-retention-full-type"] == "time"


def test_config_of_a_standby_that_backs_up_with_the_primarys_tls_server():
    tls = pb.TlsFiles("/c/cert.pem", "/c/key.pem", "/c/ca.pem")
    primary = pb.RemotePrimary("pg-0.pg-endpoints", tls)
    server = pb.TlsServer("0.0.0.0", tls, client_cn="pgbackrest")
    s3 = pb.s3_settings(relation_data())
    conf = parse_ini(pb.render_config("pg", s3, pb.PgInstance(), server=server, primary=primary))
    assert dict(conf["global"]) | {
        "tls-server-address": "0.0.0.0",
        "tls-server-port": "8200",
        "tls-server-cert-file": "/c/cert.pem",
        "tls-server-key-file": "/c/key.pem",
        "tls-server-ca-file": "/c/ca.pem",
        "tls-server-auth": "pgbackrest=pg",
    } == dict(conf["global"])
    stanza = dict(conf["pg"])
    assert stanza["backup-standby"] == "y"
    assert stanza["pg1-path"] == stanza["pg2-path"] == layout.PGDATA
    assert stanza["pg2-host"] == "pg-0.pg-endpoints"
    assert (stanza["pg2-host-type"], stanza["pg2-host-port"]) == ("tls", "8200")
    assert stanza["pg2-host-cert-file"] == "/c/cert.pem"
    assert stanza["pg2-host-key-file"] == "/c/key.pem"
    assert stanza["pg2-host-ca-file"] == "/c/ca.pem"


def test_config_refuses_line_breaks_that_would_add_options():
    s3 = pb.s3_settings(relation_data())
    with pytest.raises(ValueError, match="pg1-path"):
        pb.render_config("pg", s3, pb.PgInstance(path="/data\nrepo1-type=posix"))


@pytest.mark.parametrize("stanza", ["", "pg]\n[global", "../pg"])
def test_config_refuses_stanza_names_that_are_not_names(stanza: str):
    with pytest.raises(ValueError, match="stanza"):
        pb.render_config(stanza, pb.s3_settings(relation_data()), pb.PgInstance())


def test_paths_under_one_directory():
    paths = pb.Paths.under("/srv/pgbr")
    assert paths.directories() == (
        "/srv/pgbr/lock",
        "/srv/pgbr/log",
        "/srv/pgbr/spool",
        "/srv/pgbr",
    )
    assert paths.s3_ca_file == "/srv/pgbr/s3-ca.pem"


# --- command lines ------------------------------------------------------------------------------


def test_commands_carry_no_secret():
    commands = [
        pb.stanza_create(CONF, "pg"),
        pb.check(CONF, "pg"),
        pb.backup(CONF, "pg", "full"),
        pb.info(CONF, "pg"),
        pb.expire(CONF, "pg"),
        pb.restore(CONF, "pg", pb.Latest()),
        pb.server(CONF),
    ]
    for argv in commands:
        assert argv[:2] == ["pgbackrest", f"--config={CONF}"]
        assert not any(SECRET in arg or ACCESS in arg for arg in argv)


def test_backup_and_info_and_expire():
    assert pb.backup(CONF, "pg", "diff", {"requested-by": "admin"})[2:] == [
        "--stanza=pg",
        "--type=diff",
        "--annotation=requested-by=admin",
        "backup",
    ]
    assert pb.info(CONF, "pg")[-2:] == ["--output=json", "info"]
    assert pb.expire(CONF, "pg", "20240101-000000F")[-2:] == ["--set=20240101-000000F", "expire"]
    assert pb.expire(CONF, "pg")[-1] == "expire"


def test_restore_targets():
    assert pb.restore(CONF, "pg", pb.Latest())[2:] == ["--stanza=pg", "restore"]
    assert pb.restore(CONF, "pg", pb.BackupSet("L"), delta=True)[3:] == [
        "--delta",
        "--set=L",
        "--type=immediate",
        "--target-action=promote",
        "restore",
    ]
    moment = datetime.datetime(2024, 5, 1, 14, 30, 5, 123, tzinfo=datetime.timezone.utc)
    target = pb.PointInTime(moment.astimezone(datetime.timezone(datetime.timedelta(hours=2))))
    assert pb.restore(CONF, "pg", target)[3:] == [
        "--type=time",
        "--target=2024-05-01 14:30:05.000123+00",
        "--target-action=promote",
        "restore",
    ]
    pinned = pb.PointInTime(moment, label="L", timeline="current")
    assert pb.restore(CONF, "pg", pinned)[-3:-1] == ["--set=L", "--target-timeline=current"]


def test_a_target_without_time_zone_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        pb.format_target(datetime.datetime(2024, 5, 1))


def test_postgresql_commands_and_server():
    assert (
        pb.archive_command(CONF, "pg") == f"pgbackrest --config={CONF} --stanza=pg archive-push %p"
    )
    assert (
        pb.restore_command(CONF, "pg")
        == f'pgbackrest --config={CONF} --stanza=pg archive-get %f "%p"'
    )
    assert pb.server(CONF) == ["pgbackrest", f"--config={CONF}", "server"]
    assert pb.server_ping(CONF, "pg-1")[2:] == [
        "--tls-server-address=pg-1",
        "--tls-server-port=8200",
        "server-ping",
    ]


# --- info ---------------------------------------------------------------------------------------


def _backup(
    label: str, kind: str, prior: str | None, wal: tuple[str, str], at: int
) -> dict[str, Any]:
    return {
        "annotation": {"by": "test"} if kind == "full" else None,
        "archive": {"start": wal[0], "stop": wal[1]},
        "backrest": {"format": 5, "version": "2.45"},
        "database": {"id": 1, "repo-key": 1},
        "error": kind == "incr",
        "info": {"delta": 8458, "repository": {"delta": 386, "size": 2812118}, "size": 22992665},
        "label": label,
        "lsn": {"start": "0/2000028", "stop": "0/3000050"},
        "prior": prior,
        "reference": [prior] if prior else None,
        "timestamp": {"start": at, "stop": at + 10},
        "type": kind,
    }


FULL, DIFF, INCR = (
    "20261126-153943F",
    "20261126-153943F_20261126-153954D",
    "20261126-153943F_20261126-160000I",
)
INFO = [
    {
        "archive": [
            {
                "database": {"id": 1, "repo-key": 1},
                "id": "15-1",
                "max": "000000020000000000000007",
                "min": "000000010000000000000001",
            }
        ],
        "backup": [
            _backup(
                FULL,
                "full",
                None,
                ("000000010000000000000002", "000000010000000000000003"),
                1795707583,
            ),
            _backup(
                DIFF,
                "diff",
                FULL,
                ("000000010000000000000004", "000000010000000000000005"),
                1795707594,
            ),
            _backup(
                INCR,
                "incr",
                DIFF,
                ("000000020000000000000006", "000000020000000000000006"),
                1795708800,
            ),
        ],
        "cipher": "none",
        "db": [{"id": 1, "repo-key": 1, "system-id": 7712505333743726970, "version": "15"}],
        "name": "pg",
        "repo": [{"cipher": "none", "key": 1, "status": {"code": 0, "message": "ok"}}],
        "status": {"code": 0, "lock": {"backup": {"held": True}}, "message": "ok"},
    }
]


def test_parse_info():
    [stanza] = pb.parse_info(json.dumps(INFO))
    assert (stanza.name, stanza.ok, stanza.status_message) == ("pg", True, "ok")
    assert stanza.archive_min == "000000010000000000000001"
    assert stanza.archive_max == "000000020000000000000007"
    assert stanza.system_ids == (7712505333743726970,)
    assert stanza.repo_errors == ()
    assert stanza.backup_running
    full, diff, incr = stanza.backups
    assert [b.type for b in stanza.backups] == ["full", "diff", "incr"]
    assert (full.prior, diff.prior, incr.prior) == (None, FULL, DIFF)
    assert [b.timeline for b in stanza.backups] == [1, 1, 2]
    assert full.start == datetime.datetime(2026, 11, 26, 15, 39, 43, tzinfo=datetime.timezone.utc)
    assert full.stop - full.start == datetime.timedelta(seconds=10)
    assert (full.size, full.delta, full.repo_size, full.repo_delta) == (
        22992665,
        8458,
        2812118,
        386,
    )
    assert full.annotations == {"by": "test"} and diff.annotations == {}
    assert (full.wal_start, full.wal_stop) == (
        "000000010000000000000002",
        "000000010000000000000003",
    )
    assert incr.error and not full.error


def test_parse_info_of_a_repository_s3_refused():
    # `info` exits 0 and reports the S3 error as the repository's status (measured on 2.45).
    message = (
        "[ProtocolError] HTTP request failed with 403 (FORBIDDEN):\n*** Path/Query ***:\n"
        "GET /backups/?delimiter=%2F&list-type=2&prefix=x%2Fbackup%2F\n*** Response Content ***:\n"
        '<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>'
        "<Message>The request signature we calculated does not match</Message></Error>"
    )
    raw = [
        {
            "archive": [],
            "backup": [],
            "cipher": "none",
            "db": [],
            "name": "pg",
            "repo": [{"cipher": "none", "key": 1, "status": {"code": 99, "message": message}}],
            "status": {"code": 99, "lock": {"backup": {"held": False}}, "message": "other"},
        }
    ]
    [stanza] = pb.parse_info(json.dumps(raw))
    assert not stanza.ok and stanza.backups == () and stanza.archive_min is None
    [error] = stanza.repo_errors
    assert pb.classify_error(0, error).settings == ("secret-key",)


def test_format_table():
    [stanza] = pb.parse_info(json.dumps(INFO))
    table = pb.format_table(reversed(stanza.backups))
    header, *rows = table.splitlines()
    assert header.split() == [
        "backup-id",
        "type",
        "status",
        "start-utc",
        "stop-utc",
        "size",
        "wal",
        "timeline",
    ]
    assert [row.split()[0] for row in rows] == [FULL, DIFF, INCR]
    assert rows[0].split()[1:3] == ["full", "ok"] and rows[2].split()[1:3] == ["incr", "error"]
    assert "2026-11-26 15:39:43" in rows[0] and "21.9MiB" in rows[0]
    assert "000000010000000000000002..000000010000000000000003" in rows[0]
    assert rows[2].split()[-1] == "2"
    assert pb.format_table([]).split() == header.split()


# --- errors (messages as pgBackRest 2.45 printed them against moto, measured) -------------------

HTTP_403_HEAD = """ERROR: [039]: HTTP request failed with 403 (FORBIDDEN):
       *** Path/Query ***:
       HEAD /backups/x/archive/main/archive.info
       *** Request Headers ***:
       authorization: <redacted>
       content-length: 0
       host: localhost
       x-amz-date: <redacted>
       *** Response Headers ***:
       content-type: application/xml
"""
NO_SUCH_BUCKET = """ERROR: [039]: HTTP request failed with 404 (NOT FOUND):
       *** Path/Query ***:
       GET /nosuchbucket/?delimiter=%2F&list-type=2&prefix=x%2Farchive%2Fmain%2F
       *** Response Content ***:
       <?xml version="1.0" encoding="utf-8"?>
       <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>
"""


@pytest.mark.parametrize(
    ("code", "stderr", "settings", "words"),
    [
        (
            28,
            "ERROR: [028]: backup and archive info files exist but do not match the database\n"
            "       HINT: is this the correct stanza?\n"
            "       HINT: did an error occur during stanza-upgrade?\n",
            ("bucket", "path"),
            "another cluster",
        ),
        (
            51,
            "ERROR: [051]: PostgreSQL version 15, system-id 7712506142526167456 do not match "
            "stanza version 15, system-id 7712506139378620810\n       HINT: is this the correct stanza?",
            ("bucket", "path"),
            "another cluster",
        ),
        (39, HTTP_403_HEAD, ("access-key", "secret-key"), "refused"),
        (39, "... <Code>InvalidAccessKeyId</Code> ...", ("access-key",), "access key"),
        (39, "... <Code>SignatureDoesNotMatch</Code> ...", ("secret-key",), "secret key"),
        (39, NO_SUCH_BUCKET, ("bucket",), "does not exist"),
        (
            49,
            "ERROR: [049]: unable to connect to 'localhost:1': [111] Connection refused",
            ("endpoint",),
            "cannot be reached",
        ),
        (
            49,
            "ERROR: [049]: unable to get address for 'nosuchhost.invalid': [-2] Name or service not known",
            ("endpoint",),
            "cannot be reached",
        ),
        (
            95,
            "ERROR: [095]: unable to verify certificate presented by 'localhost:35579': [20] "
            "unable to get local issuer certificate",
            ("tls-ca-chain",),
            "trusted CA",
        ),
        (
            95,
            "ERROR: [095]: unable to find hostname '127.0.0.1' in certificate common name or "
            "subject alternative names",
            ("endpoint",),
            "host name",
        ),
        (
            101,
            "ERROR: [101]: TLS error [1:167772427] wrong version number",
            ("endpoint",),
            "HTTPS",
        ),
        (
            55,
            "ERROR: [055]: archive.info exists but backup.info is missing on repo1\n"
            "       HINT: this may be a symptom of repository corruption!",
            ("path",),
            "incomplete",
        ),
        (
            55,
            "ERROR: [055]: unable to load info file '/r/backup/pg/backup.info' or "
            "'/r/backup/pg/backup.info.copy':\n       HINT: has a stanza-create been performed?",
            (),
            "no stanza",
        ),
        (68, "ERROR: [068]: archive_command '' must contain pgbackrest", (), "archive"),
        (
            27,
            "WARN: unable to check pg1: [DbConnectError] unable to connect to 'dbname='postgres' "
            "port=1 host='/tmp'': connection failed\nERROR: [027]: no database found",
            (),
            "connect to PostgreSQL",
        ),
    ],
)
def test_classify_error_names_the_setting(
    code: int, stderr: str, settings: tuple[str, ...], words: str
):
    diagnosis = pb.classify_error(code, stderr)
    assert diagnosis.settings == settings
    assert words in diagnosis.explanation
    error = pb.PgBackRestError.from_stderr(code, stderr)
    assert error.diagnosis == diagnosis  # the summary keeps what the classification needs
    assert str(diagnosis).startswith("/".join(settings))


def test_unknown_errors_keep_the_message():
    diagnosis = pb.classify_error(99, "ERROR: [099]: something new\n")
    assert diagnosis.settings == ()
    assert "(99)" in diagnosis.explanation and "something new" in diagnosis.explanation


def test_summary_drops_the_http_dump_and_keeps_the_s3_code():
    summary = pb.summarize(NO_SUCH_BUCKET)
    assert summary == (
        "ERROR: [039]: HTTP request failed with 404 (NOT FOUND): (S3: NoSuchBucket)"
    )
    assert "redacted" not in pb.summarize(HTTP_403_HEAD)


def test_error_carries_code_summary_and_diagnosis():
    error = pb.PgBackRestError.from_stderr(39, NO_SUCH_BUCKET)
    assert error.exit_code == 39
    assert "NoSuchBucket" in str(error)
    assert error.diagnosis.settings == ("bucket",)


def test_retention_constructors():
    assert pb.Retention.by_days(14) == pb.Retention(14, "time", None)
    assert dataclasses.astuple(pb.Retention.by_count(2, diff=3)) == (2, "count", 3)

"""Backups to S3: pgBackRest's files and services on every unit, the stanza and archiving from the
leader, the s3-parameters relation, the members' TLS, and what the operator sees in status."""

from __future__ import annotations

import configparser
import dataclasses
import datetime
import os
import posixpath
import pwd
from typing import Any

import ops
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from ops import testing

import config
from components import backups
from components import restore as restore_component
from peer_data import PeerAppData, RestoreState
from relations.s3 import S3State
from state import Snapshot
from tests.unit.builders import (
    APP,
    PGBACKREST,
    PROBE,
    S3_CA,
    UTC,
    Ctx,
    FakeDatabase,
    FakePatroni,
    Mounts,
    backup_state,
    exec_timing_out_for_pgbackrest,
    healthy_cluster,
    peer_app_data,
    peer_unit_data,
    s3_relation,
    snapshot,
    stanza_digest,
    tls_parts,
    tls_secret,
)
from workload import internal_tls, layout, pgbackrest, scheduler

# object-storage-charmlib reads the Juju version with a deprecated call; warnings are errors here.
pytestmark = pytest.mark.filterwarnings("ignore:JujuVersion.from_environ:DeprecationWarning")

# pgBackRest 2.45's answer to stanza-create's first request (a HEAD) with a wrong key pair.
HTTP_403 = (
    "ERROR: [039]: HTTP request failed with 403 (FORBIDDEN):\n"
    "       *** Path/Query ***:\n"
    "       HEAD /backups/team/pg/archive/postgresql-k8s/archive.info\n"
)


def stanza_create(**kwargs: Any) -> testing.Exec:
    return testing.Exec([*PGBACKREST, *PROBE, "stanza-create"], **kwargs)


def file_in(ctx: Ctx, out: testing.State, path: str) -> Any:
    return out.get_container(layout.CONTAINER).get_filesystem(ctx) / path.lstrip("/")


def parse_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def service(out: testing.State, name: str) -> tuple[str, ops.pebble.ServiceStatus | None]:
    """A service's startup in the plan and its status in Pebble."""
    ctr = out.get_container(layout.CONTAINER)
    return ctr.plan.services[name].startup, ctr.service_statuses.get(name)


def dcs_archive_command(patroni: FakePatroni) -> str:
    return patroni.config["postgresql"]["parameters"]["archive_command"]


def pgbackrest_runs(ctx: Ctx) -> list[Any]:
    return [e for e in ctx.exec_history.get(layout.CONTAINER, []) if e.command[0] == "pgbackrest"]


ARCHIVE_PUSH = pgbackrest.archive_command(pgbackrest.CONF_FILE, APP)


# -- what every unit gets ----------------------------------------------------------------------


@pytest.mark.parametrize("leader", [True, False])
def test_every_unit_gets_pgbackrest_conf_tls_and_its_server(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, leader: bool
):
    healthy_cluster(patroni)
    state = backup_state(image, leader=leader)
    out = ctx.run(ctx.on.config_changed(), state)

    conf = parse_ini(file_in(ctx, out, pgbackrest.CONF_FILE).read_text())
    members = conf[APP]
    # pg1 is this unit's own data directory; every other member is reached over TLS.
    assert members["pg1-path"] == layout.PGDATA
    assert "pg1-host" not in members
    assert members["pg1-user"] == layout.SystemUser.BACKUP.value  # not a superuser
    assert [members["pg2-host"], members["pg3-host"]] == [
        f"{APP}-1.{APP}-endpoints",
        f"{APP}-2.{APP}-endpoints",
    ]
    for i in (2, 3):
        assert members[f"pg{i}-host-type"] == "tls"
        assert members[f"pg{i}-host-port"] == str(layout.PORT_PGBACKREST_SERVER)
        assert members[f"pg{i}-host-cert-file"] == backups.TLS_FILES.cert_file
        assert members[f"pg{i}-host-ca-file"] == backups.TLS_FILES.ca_file
        assert members[f"pg{i}-path"] == layout.PGDATA
    general = conf["global"]
    assert general["tls-server-address"] == "0.0.0.0"
    assert general["tls-server-port"] == str(layout.PORT_PGBACKREST_SERVER)
    assert general["tls-server-auth"] == f"{backups.CLIENT_CN}={APP}"
    assert general["tls-server-cert-file"] == backups.TLS_FILES.cert_file
    assert general["repo1-s3-bucket"] == "backups"
    assert general["repo1-s3-endpoint"] == "s3.example.com"
    assert general["repo1-storage-port"] == "9000"
    assert general["repo1-path"] == "/team/pg"
    assert general["repo1-s3-region"] == "eu-west-1"
    assert general["repo1-s3-uri-style"] == "path"
    assert general["repo1-storage-ca-file"] == pgbackrest.DEFAULT_PATHS.s3_ca_file

    # The key pair, the password and the TLS key: every file is the workload user's alone.
    ca, cert, key = tls_parts(out.get_secret(label=backups.TLS_SECRET_LABEL).tracked_content)
    backup = state.get_secret(label="system-users").tracked_content["backup-password"]
    expected = {
        pgbackrest.CONF_FILE: None,
        backups.PGPASS_FILE: f"*:*:*:backup:{backup}\n",
        backups.TLS_FILES.ca_file: ca,
        backups.TLS_FILES.cert_file: cert,
        backups.TLS_FILES.key_file: key,
        pgbackrest.DEFAULT_PATHS.s3_ca_file: S3_CA.strip() + "\n",
    }
    for path, content in expected.items():
        written = file_in(ctx, out, path)
        assert written.stat().st_mode & 0o777 == 0o600, path
        if content is not None:
            assert written.read_text() == content, path

    ctr = out.get_container(layout.CONTAINER)
    server = ctr.plan.services[backups.SERVICE]
    assert server.command == f"pgbackrest --config={pgbackrest.CONF_FILE} server"
    assert server.environment == {"PGPASSFILE": backups.PGPASS_FILE}
    assert (server.user, server.group) == (layout.WORKLOAD_USER, layout.WORKLOAD_GROUP)
    assert service(out, backups.SERVICE) == ("enabled", ops.pebble.ServiceStatus.ACTIVE)
    # pgBackRest makes no directory of its own: the charm hands them to the workload user.
    for path in pgbackrest.DEFAULT_PATHS.directories():
        assert file_in(ctx, out, path).is_dir(), path


def test_password_file_escapes_what_pgpass_treats_as_separators(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    state = backup_state(image, leader=False)
    system = state.get_secret(label="system-users")
    content = {**system.tracked_content, "backup-password": r"a:b\c"}
    secrets = [s for s in state.secrets if s.label != "system-users"]
    state = dataclasses.replace(
        state,
        secrets=[
            *secrets,
            dataclasses.replace(system, tracked_content=content, latest_content=content),
        ],
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert file_in(ctx, out, backups.PGPASS_FILE).read_text() == "*:*:*:backup:a\\:b\\\\c\n"


def test_pgbackrest_conf_lists_every_peer_member_once(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni, units=5)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, leader=False, units=5))
    members = parse_ini(file_in(ctx, out, pgbackrest.CONF_FILE).read_text())[APP]
    hosts = [members[f"pg{i}-host"] for i in range(2, 6)]
    assert hosts == [f"{APP}-{i}.{APP}-endpoints" for i in range(1, 5)]
    assert "pg6-host" not in members


@pytest.mark.parametrize(
    ("why", "kwargs"),
    [
        ("not related", {"s3": None, "stanza": False}),
        ("the provider has not answered", {"s3": "unanswered", "stanza": False}),
        ("no TLS secret from the leader yet", {"tls": False, "leader": False}),
    ],
)
def test_no_pgbackrest_files_and_no_server_without_settings_or_tls(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, why: str, kwargs: dict[str, Any]
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, **kwargs))
    assert not file_in(ctx, out, pgbackrest.CONF_FILE).exists(), why
    assert not file_in(ctx, out, backups.PGPASS_FILE).exists(), why
    assert not file_in(ctx, out, backups.TLS_FILES.key_file).exists(), why
    startup, status = service(out, backups.SERVICE)
    assert startup == "disabled" and status != ops.pebble.ServiceStatus.ACTIVE, why
    if kwargs.get("leader", True):
        assert dcs_archive_command(patroni) == "/bin/true", why
    assert not pgbackrest_runs(ctx), why


def test_secrets_on_disk_are_kept_private_and_go_with_the_relation(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    ctx.run(ctx.on.config_changed(), backup_state(image))
    home = image["home"].source
    secret_files = [backups.PGPASS_FILE, pgbackrest.CONF_FILE, backups.TLS_FILES.key_file]
    on_disk = [home / posixpath.relpath(path, layout.HOME) for path in secret_files]
    # Someone made the password file readable by all and handed the key to root: both are
    # written again, though their content is right.
    on_disk[0].chmod(0o644)
    os.chown(on_disk[2], 0, 0)
    ctx.run(ctx.on.update_status(), backup_state(image))
    for path in on_disk:
        info = path.stat()
        assert (info.st_mode & 0o777, pwd.getpwuid(info.st_uid).pw_name) == (0o600, "postgres")

    ctx.run(ctx.on.config_changed(), backup_state(image, s3=None, stanza=False))
    assert [p for p in on_disk if p.exists()] == []


def test_a_provider_that_has_not_answered_is_not_an_error(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.update_status(), backup_state(image, s3="unanswered", stanza=False))
    assert out.app_status == ops.ActiveStatus("")
    assert peer_app_data(out).backup_error == ""


@pytest.mark.parametrize(
    ("options", "kind", "full"),
    [
        ({}, "time", "30"),
        ({"backup-retention-type": "count", "backup-retention-full": 4}, "count", "4"),
    ],
    ids=["days-by-default", "count"],
)
def test_retention_from_config_reaches_pgbackrest_conf(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, options: dict[str, Any], kind: str, full: str
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, leader=False, config=options))
    general = parse_ini(file_in(ctx, out, pgbackrest.CONF_FILE).read_text())["global"]
    assert (general["repo1-retention-full-type"], general["repo1-retention-full"]) == (kind, full)


@pytest.mark.parametrize("problem", ["secret-gone", "content-incomplete"])
def test_unusable_tls_secret_means_no_server_on_a_non_leader(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, problem: str
):
    healthy_cluster(patroni)
    state = backup_state(image, leader=False)
    made = state.get_secret(label=backups.TLS_SECRET_LABEL)
    others = [s for s in state.secrets if s.label != backups.TLS_SECRET_LABEL]
    if problem == "content-incomplete":
        partial = dict(list(made.tracked_content.items())[:2])
        others.append(dataclasses.replace(made, tracked_content=partial, latest_content=partial))
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(state, secrets=others))
    assert not file_in(ctx, out, pgbackrest.CONF_FILE).exists()
    assert service(out, backups.SERVICE)[0] == "disabled"


# -- the backup scheduler: the leader's, and only with a schedule ------------------------------


def test_leader_with_a_schedule_runs_the_scheduler(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    schedules = {"backup-schedule-full": "0 2 * * 0", "backup-schedule-incremental": "0 3 * * *"}
    out = ctx.run(ctx.on.config_changed(), backup_state(image, config=schedules))
    assert service(out, scheduler.SERVICE) == ("enabled", ops.pebble.ServiceStatus.ACTIVE)
    plan = out.get_container(layout.CONTAINER).plan.services[scheduler.SERVICE]
    assert plan.command == scheduler.service(enabled=True)["command"]
    for path, (text, mode) in scheduler.files("0 2 * * 0", "0 3 * * *").items():
        written = file_in(ctx, out, path)
        assert (written.read_text(), written.stat().st_mode & 0o777) == (text, mode)
    jobs = file_in(ctx, out, scheduler.CRONTAB_PATH).read_text().splitlines()[-2:]
    assert [job.split(scheduler.SCRIPT_PATH)[0] for job in jobs] == ["0 2 * * 0 ", "0 3 * * * "]


@pytest.mark.parametrize(
    ("leader", "schedules"),
    [
        (True, {}),
        (False, {"backup-schedule-full": "0 2 * * 0"}),
    ],
    ids=["leader-without-schedule", "non-leader-with-schedule"],
)
def test_no_scheduler_without_schedule_or_leadership(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, leader: bool, schedules: dict[str, str]
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, leader=leader, config=schedules))
    startup, status = service(out, scheduler.SERVICE)
    assert startup == "disabled" and status != ops.pebble.ServiceStatus.ACTIVE
    crontab = file_in(ctx, out, scheduler.CRONTAB_PATH).read_text()
    assert crontab == scheduler.files("", "")[scheduler.CRONTAB_PATH][0]  # no job


def test_no_scheduler_without_a_repository(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(
        image, s3=None, stanza=False, config={"backup-schedule-full": "0 0 * * *"}
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert service(out, scheduler.SERVICE)[0] == "disabled"


# -- the members' TLS secret --------------------------------------------------------------------


# ops.testing checks the secret keys as Juju does (3 characters at least, e.g. no "ca").
def test_leader_makes_the_tls_secret_once_and_serves_with_it(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    state = backup_state(image, tls=False, execs=[stanza_create()])
    out = ctx.run(ctx.on.config_changed(), state)
    made = [s for s in out.secrets if s.label == backups.TLS_SECRET_LABEL]
    assert len(made) == 1
    assert peer_app_data(out).backup_tls_secret == made[0].id
    assert service(out, backups.SERVICE) == ("enabled", ops.pebble.ServiceStatus.ACTIVE)
    cert = file_in(ctx, out, backups.TLS_FILES.cert_file).read_text()
    assert x509.load_pem_x509_certificate(cert.encode()).subject.rfc4514_string() == (
        f"CN={backups.CLIENT_CN}"
    )

    again = ctx.run(ctx.on.update_status(), out)
    assert [s.id for s in again.secrets if s.label == backups.TLS_SECRET_LABEL] == [made[0].id]
    assert peer_app_data(again).backup_tls_secret == made[0].id


def test_leader_reuses_the_tls_secret_it_made(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image)
    before = peer_app_data(state).backup_tls_secret
    out = ctx.run(ctx.on.config_changed(), state)
    assert [s.id for s in out.secrets if s.label == backups.TLS_SECRET_LABEL] == [before]
    assert peer_app_data(out).backup_tls_secret == before


def test_the_tls_material_is_for_every_member_and_both_ways():
    ca_pem, cert_pem, key_pem = tls_parts(tls_secret().tracked_content)
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"*.{APP}-endpoints" in names.get_values_for_type(x509.DNSName)
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- internal_tls ------------------------------------------------------------------------------


def test_internal_tls_certificate_verifies_against_its_ca_with_names_and_both_usages():
    names = ["*.db-endpoints", "*.db-endpoints.prod", "*.db-endpoints.prod.svc.cluster.local"]
    tls = internal_tls.generate("pgbackrest", names)
    ca = x509.load_pem_x509_certificate(tls.ca.encode())
    cert = x509.load_pem_x509_certificate(tls.cert.encode())

    cert.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert not cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == names
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.subject.rfc4514_string() == "CN=pgbackrest"
    assert cert.issuer == ca.subject
    now = datetime.datetime.now(UTC)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=365)

    key = serialization.load_pem_private_key(tls.key.encode(), None)
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    assert "PRIVATE KEY" not in repr(tls)


def test_internal_tls_is_fresh_each_time():
    first, second = (internal_tls.generate("pgbackrest", ["a.example"]) for _ in range(2))
    assert first.ca != second.ca and first.key != second.key


# -- the stanza and archiving, from the leader -------------------------------------------------


def test_leader_creates_the_stanza_and_turns_archiving_on_in_the_same_hook(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    out = ctx.run(
        ctx.on.config_changed(), backup_state(image, stanza=False, execs=[stanza_create()])
    )
    data = peer_app_data(out)
    assert data.backup_stanza == stanza_digest()
    assert data.backup_error == ""
    assert dcs_archive_command(patroni) == ARCHIVE_PUSH
    assert ARCHIVE_PUSH.endswith(" %p") and "archive-push" in ARCHIVE_PUSH
    [run] = pgbackrest_runs(ctx)
    assert run.command == [*PGBACKREST, *PROBE, "stanza-create"]
    assert (run.user, run.group) == (layout.WORKLOAD_USER, layout.WORKLOAD_GROUP)
    assert run.environment == {"PGPASSFILE": backups.PGPASS_FILE}
    assert out.app_status == ops.ActiveStatus("no WAL archived yet")


def test_stanza_refused_blocks_naming_the_setting_and_archiving_stays_off(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    refused = stanza_create(return_code=39, stderr=HTTP_403)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, stanza=False, execs=[refused]))
    message = (
        "S3 repository refused: access-key/secret-key: the S3 server refused these credentials"
    )
    data = peer_app_data(out)
    assert (data.backup_stanza, data.backup_error) == ("", message)
    assert dcs_archive_command(patroni) == "/bin/true"
    assert out.app_status == ops.BlockedStatus(message)


def test_a_refused_stanza_is_retried_and_the_error_cleared(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    state = backup_state(
        image,
        stanza=False,
        app_data={"backup-error": "S3 repository refused: bucket: the bucket does not exist"},
        execs=[stanza_create()],
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert (peer_app_data(out).backup_stanza, peer_app_data(out).backup_error) == (
        stanza_digest(),
        "",
    )
    assert out.app_status.name == "active"


def test_stanza_already_made_for_these_settings_is_not_made_again(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), backup_state(image))
    assert not pgbackrest_runs(ctx)
    assert dcs_archive_command(patroni) == ARCHIVE_PUSH
    assert peer_app_data(out).backup_stanza == stanza_digest()


def test_other_settings_mean_another_repository_and_a_new_stanza(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    old = stanza_digest(bucket="old-backups")
    assert old != stanza_digest()
    state = backup_state(
        image, stanza=False, app_data={"backup-stanza": old}, execs=[stanza_create()]
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert [r.command[-1] for r in pgbackrest_runs(ctx)] == ["stanza-create"]
    assert peer_app_data(out).backup_stanza == stanza_digest()


def test_other_settings_with_the_new_stanza_refused_turn_archiving_off(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    patroni.config = {"postgresql": {"parameters": {"archive_command": ARCHIVE_PUSH}}}
    state = backup_state(
        image,
        stanza=False,
        app_data={"backup-stanza": stanza_digest(bucket="old-backups")},
        execs=[
            stanza_create(
                return_code=28,
                stderr="ERROR: [028]: backup and archive info files exist but do not match the database\n",
            )
        ],
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert dcs_archive_command(patroni) == "/bin/true"
    assert "another cluster" in peer_app_data(out).backup_error
    assert "bucket/path" in out.app_status.message


def test_relation_gone_turns_archiving_off(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    patroni.config = {"postgresql": {"parameters": {"archive_command": ARCHIVE_PUSH}}}
    state = backup_state(image, s3=None, app_data={"backup-stanza": stanza_digest()})
    out = ctx.run(ctx.on.update_status(), state)
    assert peer_app_data(out).backup_stanza == ""
    assert dcs_archive_command(patroni) == "/bin/true"
    assert service(out, backups.SERVICE)[0] == "disabled"
    assert not pgbackrest_runs(ctx)
    assert out.app_status == ops.ActiveStatus("")


def test_relation_broken_turns_archiving_off(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    patroni.config = {"postgresql": {"parameters": {"archive_command": ARCHIVE_PUSH}}}
    state = backup_state(image)
    relation = state.get_relations("s3-parameters")[0]
    out = ctx.run(ctx.on.relation_broken(relation), state)
    assert peer_app_data(out).backup_stanza == ""
    assert dcs_archive_command(patroni) == "/bin/true"


def test_non_leader_never_creates_the_stanza(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, leader=False, stanza=False, execs=[stanza_create()])
    out = ctx.run(ctx.on.config_changed(), state)
    assert not pgbackrest_runs(ctx)
    assert peer_app_data(out).backup_stanza == ""
    assert not patroni.writes()


def test_non_leader_follows_the_leaders_stanza_in_its_own_patroni_yml(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, leader=False))
    text = file_in(ctx, out, layout.PATRONI_CONF).read_text()
    assert "archive-push" in text


def test_probes_fail_fast(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    # An unreachable endpoint or member must not hold the hook for pgBackRest's default minutes.
    healthy_cluster(patroni)
    out = ctx.run(
        ctx.on.config_changed(), backup_state(image, stanza=False, execs=[stanza_create()])
    )
    [run] = pgbackrest_runs(ctx)
    assert run.command[-4:] == [
        "--io-timeout=15",
        "--db-timeout=15",
        "--protocol-timeout=30",
        "stanza-create",
    ]
    assert peer_app_data(out).backup_stanza == stanza_digest()


def test_a_stanza_create_that_never_finishes_blocks_and_archiving_stays_off(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, monkeypatch: pytest.MonkeyPatch
):
    healthy_cluster(patroni)
    monkeypatch.setattr(ops.Container, "exec", exec_timing_out_for_pgbackrest())
    out = ctx.run(ctx.on.config_changed(), backup_state(image, stanza=False))
    message = (
        f"S3 repository refused: stanza-create did not finish within {backups.PROBE_TIMEOUT:.0f} s"
    )
    assert (peer_app_data(out).backup_stanza, peer_app_data(out).backup_error) == ("", message)
    assert out.app_status == ops.BlockedStatus(message)
    assert dcs_archive_command(patroni) == "/bin/true"


# -- the stanza waits for every member's pgBackRest server -------------------------------------


def acks(*digests: str) -> dict[int, dict[str, str]]:
    """The peer units' databags: each says with which settings its server runs ("": none)."""
    return {i: {backups.SERVER_KEY: d} if d else {} for i, d in enumerate(digests, start=1)}


@pytest.mark.parametrize(
    ("peers_data", "app_data"),
    [
        (acks(stanza_digest(), ""), {}),
        (
            acks(stanza_digest(), stanza_digest(bucket="old-backups")),
            {"backup-stanza": stanza_digest(bucket="old-backups")},
        ),
    ],
    ids=["a-member-not-serving-yet", "a-member-still-serving-the-old-settings"],
)
def test_stanza_waits_until_every_member_serves_these_settings(
    ctx: Ctx,
    image: Mounts,
    patroni: FakePatroni,
    peers_data: dict[int, dict[str, str]],
    app_data: dict[str, str],
):
    # pgBackRest looks for the primary among every member listed in pgbackrest.conf.
    healthy_cluster(patroni)
    patroni.config = {"postgresql": {"parameters": {"archive_command": ARCHIVE_PUSH}}}
    state = backup_state(
        image, stanza=False, app_data=app_data, peers_data=peers_data, execs=[stanza_create()]
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert not pgbackrest_runs(ctx)
    assert peer_app_data(out).backup_error == ""
    assert peer_app_data(out).backup_stanza in ("", app_data.get("backup-stanza"))
    assert dcs_archive_command(patroni) == "/bin/true"  # never to another repository
    assert out.app_status.name == "active"

    # The last member says its server runs with these settings: the stanza in that hook.
    peer = out.get_relations("database-peers")[0]
    peer = dataclasses.replace(peer, peers_data=acks(stanza_digest(), stanza_digest()))
    others = [r for r in out.relations if r.endpoint != "database-peers"]
    ctx.exec_history.clear()
    out = ctx.run(
        ctx.on.relation_changed(peer, remote_unit=2),
        dataclasses.replace(out, relations=[peer, *others]),
    )
    assert [r.command[-1] for r in pgbackrest_runs(ctx)] == ["stanza-create"]
    assert peer_app_data(out).backup_stanza == stanza_digest()
    assert dcs_archive_command(patroni) == ARCHIVE_PUSH


@pytest.mark.parametrize(
    ("mine", "theirs", "ready"),
    [
        ("d1", ("d1", "d1"), True),
        ("", ("d1", "d1"), False),
        ("d0", ("d1", "d1"), False),
        ("d1", ("d1", ""), False),
        ("d1", ("d1", "d0"), False),
        ("d1", (), True),
    ],
    ids=["all", "not-me", "me-on-old-settings", "a-peer", "a-peer-on-old-settings", "alone"],
)
def test_servers_ready_needs_every_unit_this_one_included(
    mine: str, theirs: tuple[str, ...], ready: bool
):
    units = [f"{APP}/{i}" for i in range(1, len(theirs) + 1)]
    databags = {
        u: {backups.SERVER_KEY: d} if d else {} for u, d in zip(units, theirs, strict=True)
    }
    databags[f"{APP}/0"] = {backups.SERVER_KEY: mine} if mine else {}
    state = snapshot(unit_data=databags)
    assert backups.servers_ready(state, "d1") is ready
    unrelated = dataclasses.replace(state, peers_related=False)
    assert backups.servers_ready(unrelated, "d1") is False


@pytest.mark.parametrize("units", [1, 3])
def test_the_leaders_server_counts_in_the_hook_that_starts_it(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, units: int
):
    healthy_cluster(patroni, units=units)
    peers_data = acks(*[stanza_digest()] * (units - 1))  # the others serve already
    state = backup_state(
        image,
        units=units,
        stanza=False,
        servers=False,
        peers_data=peers_data,
        execs=[stanza_create()],
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert peer_unit_data(out)[backups.SERVER_KEY] == stanza_digest()
    assert [r.command[-1] for r in pgbackrest_runs(ctx)] == ["stanza-create"]
    assert dcs_archive_command(patroni) == ARCHIVE_PUSH


def test_the_leaders_server_counts_from_its_next_hook(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    # At the latest in the leader's next hook.
    healthy_cluster(patroni, units=1)
    state = backup_state(image, units=1, stanza=False, servers=False, execs=[stanza_create()])
    out = ctx.run(ctx.on.config_changed(), state)
    out = ctx.run(ctx.on.update_status(), out)
    assert peer_app_data(out).backup_stanza == stanza_digest()
    assert dcs_archive_command(patroni) == ARCHIVE_PUSH


# -- every unit says with which settings its pgBackRest server runs ----------------------------


@pytest.mark.parametrize("leader", [True, False])
def test_a_unit_says_its_server_runs_with_these_settings(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, leader: bool
):
    healthy_cluster(patroni)
    state = backup_state(image, leader=leader, servers=False, execs=[stanza_create()])
    out = ctx.run(ctx.on.config_changed(), state)
    assert service(out, backups.SERVICE) == ("enabled", ops.pebble.ServiceStatus.ACTIVE)
    assert peer_unit_data(out)[backups.SERVER_KEY] == stanza_digest()


@pytest.mark.parametrize(
    ("why", "kwargs"),
    [
        ("not related", {"s3": None, "stanza": False}),
        ("the provider has not answered", {"s3": "unanswered", "stanza": False}),
        ("invalid settings", {"s3": {"bucket": "Not_A_Bucket"}, "stanza": False}),
        ("no TLS secret from the leader yet", {"tls": False, "leader": False}),
    ],
)
def test_a_unit_without_its_server_says_nothing_and_withdraws_what_it_said(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, why: str, kwargs: dict[str, Any]
):
    healthy_cluster(patroni)
    said_before = {backups.SERVER_KEY: stanza_digest()}
    out = ctx.run(ctx.on.config_changed(), backup_state(image, unit_data=said_before, **kwargs))
    assert service(out, backups.SERVICE)[0] == "disabled", why
    assert backups.SERVER_KEY not in peer_unit_data(out), why


def test_new_s3_settings_change_what_a_unit_says(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, leader=False))
    assert peer_unit_data(out)[backups.SERVER_KEY] == stanza_digest()
    relation, secret = s3_relation(bucket="moved")
    others = [r for r in out.relations if r.endpoint != "s3-parameters"]
    secrets = [s for s in out.secrets if s.owner is not None]
    moved = dataclasses.replace(out, relations=[*others, relation], secrets=[*secrets, secret])
    out = ctx.run(ctx.on.relation_changed(relation), moved)
    assert peer_unit_data(out)[backups.SERVER_KEY] == stanza_digest(bucket="moved")


def test_the_relation_gone_withdraws_what_a_unit_said(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, leader=False))
    assert backups.SERVER_KEY in peer_unit_data(out)
    relation = out.get_relations("s3-parameters")[0]
    out = ctx.run(ctx.on.relation_broken(relation), out)
    assert backups.SERVER_KEY not in peer_unit_data(out)


# -- archive_command, pure ---------------------------------------------------------------------


def make_state(**peer: Any) -> Snapshot:
    return snapshot(peer_data=PeerAppData(**peer))


def backup_statuses(
    data: PeerAppData, s3: S3State, cfg: config.CharmConfig | None, now: datetime.datetime
) -> list[ops.StatusBase]:
    return backups.problems(snapshot(peer_data=data, s3=s3, config=cfg), now)


SETTINGS = pgbackrest.s3_settings(
    {
        "bucket": "backups",
        "endpoint": "https://s3.example.com",
        "access-key": "a",
        "secret-key": "b",
    }
)


@pytest.mark.parametrize(
    ("s3", "stanza", "archiving"),
    [
        (S3State(related=False), "", False),
        (S3State(related=True), "", False),
        (S3State(related=True, error="s3-parameters: bucket: bad"), "", False),
        (S3State(related=True, settings=SETTINGS), "", False),
        (S3State(related=True, settings=dataclasses.replace(SETTINGS, path="/other")), "x", False),
        (S3State(related=True, settings=SETTINGS), "match", True),
    ],
    ids=["unrelated", "unanswered", "invalid", "no-stanza", "other-settings", "ready"],
)
def test_archive_command_only_once_the_stanza_matches_the_settings(
    s3: S3State, stanza: str, archiving: bool
):
    digest = backups.settings_digest(make_state(), SETTINGS)
    state = dataclasses.replace(make_state(backup_stanza=digest if stanza else ""), s3=s3)
    expected = ARCHIVE_PUSH if archiving else "/bin/true"
    assert backups.archive_command(state) == expected
    assert backups.archiving(state) is archiving


def test_settings_digest_changes_with_every_setting_and_the_application():
    digest = backups.settings_digest(make_state(), SETTINGS)
    for change in ({"bucket": "other"}, {"path": "/x"}, {"endpoint": "https://b.example"}):
        assert (
            backups.settings_digest(make_state(), dataclasses.replace(SETTINGS, **change))
            != digest
        )
    other_app = dataclasses.replace(make_state(), app_name="pg2")
    assert backups.settings_digest(other_app, SETTINGS) != digest


# -- archive lag and the application's status ---------------------------------------------------


@pytest.mark.parametrize(
    ("archiver", "text"),
    [
        ((None, "000000010000000000000005", False), "no WAL archived yet"),
        (
            ("000000010000000000000004", "000000010000000000000005", False),
            "archive lag 0 WAL files",
        ),
        (
            ("000000010000000000000003", "000000010000000000000005", False),
            "archive lag 1 WAL file",
        ),
        (
            ("0000000100000000000000FE", "000000010000000100000001", False),
            "archive lag 2 WAL files",
        ),
        (
            ("000000010000000000000004.partial", "000000020000000000000006", False),
            "archive lag 1 WAL file",
        ),
        (
            # A backup label names no whole segment: the library does not guess.
            ("000000010000000000000003.00000028.backup", "000000010000000000000004", False),
            "WAL archiving on",
        ),
        (("000000010000000000000003", "000000010000000000000009", True), "WAL archiving failing"),
        (("00000002.history", "000000020000000000000006", False), "WAL archiving on"),
        (("00000002.history", "000000020000000000000006", True), "WAL archiving failing"),
    ],
    ids=[
        "none",
        "current",
        "one",
        "across-log-files",
        "partial",
        "backup-label",
        "failing",
        "history",
        "history-failing",
    ],
)
def test_archive_lag_text(archiver: tuple[Any, ...], text: str):
    assert backups.archive_lag(FakeDatabase(archiver=archiver)) == text  # type: ignore[arg-type]


def test_app_status_shows_the_last_backup_and_the_archive_lag(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni)
    database.archiver = ("000000010000000000000003", "000000010000000000000006", False)
    succeeded = {"full": "2026-11-26T15:39:53+00:00", "incremental": "2026-11-27T03:00:10+00:00"}
    out = ctx.run(
        ctx.on.update_status(), backup_state(image, app_data={"backup-succeeded": succeeded})
    )
    assert out.app_status == ops.ActiveStatus(
        "last backup 2026-11-27 03:00Z, archive lag 2 WAL files"
    )


def test_app_status_without_archive_lag_when_the_primary_cannot_be_queried(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.update_status(), backup_state(image))
    assert out.app_status == ops.ActiveStatus("no WAL archived yet")
    database.fail = True
    out = ctx.run(ctx.on.update_status(), backup_state(image))
    assert out.app_status == ops.ActiveStatus("")


def test_app_status_after_a_timeline_history_file_was_archived(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, database: FakeDatabase
):
    # Right after a promotion or a restore the last archived file is the new timeline's history.
    healthy_cluster(patroni)
    database.archiver = ("00000002.history", "000000020000000000000006", False)
    out = ctx.run(ctx.on.update_status(), backup_state(image))
    assert out.app_status == ops.ActiveStatus("WAL archiving on")


def test_app_status_without_archive_lag_when_pg_stat_archiver_cannot_be_read(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni)
    database.query_error = psycopg.OperationalError("server closed the connection unexpectedly")
    succeeded = {"full": "2026-11-26T15:39:53+00:00"}
    out = ctx.run(
        ctx.on.update_status(), backup_state(image, app_data={"backup-succeeded": succeeded})
    )
    assert out.app_status == ops.ActiveStatus("last backup 2026-11-26 15:39Z")


# -- the s3-parameters relation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"bucket": "Not_A_Bucket"}, "bucket"),
        ({"endpoint": "http://s3.example.com"}, "endpoint"),
        ({"endpoint": "https://s3.example.com/some/path"}, "endpoint"),
        ({"region": "eu west"}, "region"),
        ({"path": "/a/../b"}, "path"),
        ({"s3-uri-style": "virtual"}, "s3-uri-style"),
        ({"tls-ca-chain": ["not a certificate"]}, "tls-ca-chain"),
        ({"bucket": None}, "bucket"),
        # What the s3 library can deliver once it JSON-decodes a field.
        ({"bucket": "backups\n"}, "bucket"),
        ({"region": "eu-west-1\x00"}, "region"),
        ({"path": "/pg\r\nrepo1-type=posix"}, "path"),
        ({"secret-key": "s3cr3t\n"}, "secret-key"),
        ({"endpoint": "https://user:pw@s3.example.com"}, "endpoint"),
        ({"endpoint": "https://s3.example.com:0"}, "endpoint"),
        ({"bucket": True}, "bucket"),
    ],
)
def test_invalid_s3_settings_block_naming_the_setting_and_configure_nothing(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, change: dict[str, Any], setting: str
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, s3=change, stanza=False))
    assert out.app_status.name == "blocked"
    assert out.app_status.message.startswith(f"s3-parameters: {setting}: ")
    assert not file_in(ctx, out, pgbackrest.CONF_FILE).exists()
    assert dcs_archive_command(patroni) == "/bin/true"
    assert not pgbackrest_runs(ctx)


def test_s3_key_pair_is_read_from_the_providers_secret(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    out = ctx.run(
        ctx.on.config_changed(),
        backup_state(
            image, leader=False, s3={"access-key": "AKIAOTHER", "secret-key": "s3cr3t/+="}
        ),
    )
    general = parse_ini(file_in(ctx, out, pgbackrest.CONF_FILE).read_text())["global"]
    assert (general["repo1-s3-key"], general["repo1-s3-key-secret"]) == ("AKIAOTHER", "s3cr3t/+=")


def test_s3_defaults_for_what_the_provider_leaves_out(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    minimal = {
        "endpoint": None,
        "region": None,
        "path": None,
        "s3-uri-style": None,
        "tls-ca-chain": None,
    }
    out = ctx.run(ctx.on.config_changed(), backup_state(image, leader=False, s3=minimal))
    general = parse_ini(file_in(ctx, out, pgbackrest.CONF_FILE).read_text())["global"]
    assert general["repo1-s3-endpoint"] == "s3.us-east-1.amazonaws.com"
    assert general["repo1-s3-region"] == "us-east-1"
    assert general["repo1-s3-uri-style"] == "host"
    assert general["repo1-path"] == "/"
    assert "repo1-storage-ca-file" not in general
    assert not file_in(ctx, out, pgbackrest.DEFAULT_PATHS.s3_ca_file).exists()


def test_provider_without_secrets_gives_the_key_pair_in_its_databag(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    # An older provider (before Juju secrets) publishes every field in the databag.
    healthy_cluster(patroni)
    state = backup_state(image, leader=False, s3=None, stanza=False)
    fields = {"bucket": "backups", "endpoint": "https://s3.example.com", "access-key": "AKIAOLD"}
    fields["secret-key"] = "old/secret"
    relation = testing.Relation(
        "s3-parameters", remote_app_name="s3-integrator", remote_app_data=fields
    )
    out = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(state, relations=[*state.relations, relation])
    )
    general = parse_ini(file_in(ctx, out, pgbackrest.CONF_FILE).read_text())["global"]
    assert (general["repo1-s3-key"], general["repo1-s3-key-secret"]) == ("AKIAOLD", "old/secret")


def test_unreadable_s3_secret_blocks(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, s3=None, stanza=False)
    relation, _ = s3_relation()  # its secret is not in the model: revoked, or removed
    out = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(state, relations=[*state.relations, relation])
    )
    assert out.app_status == ops.BlockedStatus("the s3-parameters relation data cannot be read")
    assert not file_in(ctx, out, pgbackrest.CONF_FILE).exists()


def test_s3_relation_changes_reach_pgbackrest_conf(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, leader=False)
    out = ctx.run(ctx.on.config_changed(), state)
    relation, secret = s3_relation(bucket="moved")
    others = [r for r in out.relations if r.endpoint != "s3-parameters"]
    secrets = [s for s in out.secrets if s.owner is not None]
    moved = dataclasses.replace(out, relations=[*others, relation], secrets=[*secrets, secret])
    out = ctx.run(ctx.on.relation_changed(relation), moved)
    general = parse_ini(file_in(ctx, out, pgbackrest.CONF_FILE).read_text())["global"]
    assert general["repo1-s3-bucket"] == "moved"


# -- presentation ------------------------------------------------------------------------------


def restore(phase: str, **extra: Any) -> RestoreState:
    return RestoreState(id="ab12cd34", phase=phase, **extra)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (None, None),
        (restore("stopping"), ops.MaintenanceStatus("restore ab12cd34: stopping every member")),
        (
            restore("restoring", restorer=f"{APP}-0"),
            ops.MaintenanceStatus(f"restore ab12cd34: restoring on {APP}-0"),
        ),
        (
            restore("replicas"),
            ops.MaintenanceStatus("restore ab12cd34: re-cloning the other members"),
        ),
        (
            restore("failed", message="recovery did not finish"),
            ops.BlockedStatus("restore ab12cd34 failed: recovery did not finish"),
        ),
    ],
)
def test_restore_status(state: RestoreState | None, status: ops.StatusBase | None):
    assert restore_component.restore_status(state) == status


NOW = datetime.datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
RELATED = S3State(related=True, settings=SETTINGS)


def schedule(**options: str) -> config.CharmConfig:
    return config.load_config(options)


def test_backup_statuses_nothing_to_say():
    data = PeerAppData(backup_stanza="x")
    assert backup_statuses(data, RELATED, schedule(), NOW) == []
    assert backup_statuses(PeerAppData(), S3State(related=False), None, NOW) == []


def test_backup_statuses_s3_error_blocks_naming_the_setting():
    s3 = S3State(related=True, error="s3-parameters: endpoint: expected https://host[:port]")
    data = PeerAppData(backup_error="S3 repository refused: something older")
    assert backup_statuses(data, s3, schedule(), NOW) == [
        ops.BlockedStatus("s3-parameters: endpoint: expected https://host[:port]")
    ]


def test_backup_statuses_backup_error_blocks_while_related():
    data = PeerAppData(backup_error="S3 repository refused: bucket: the bucket does not exist")
    assert backup_statuses(data, RELATED, schedule(), NOW) == [
        ops.BlockedStatus("S3 repository refused: bucket: the bucket does not exist")
    ]
    assert backup_statuses(data, S3State(related=False), schedule(), NOW) == []


def test_backup_statuses_missed_schedule_blocks_with_the_time():
    data = PeerAppData(
        backup_stanza="x",
        backup_fired={"full": "2026-11-26T02:00:00+00:00"},
        backup_succeeded={"full": "2026-11-25T02:05:00+00:00"},
    )
    statuses = backup_statuses(
        data, RELATED, schedule(**{"backup-schedule-full": "0 2 * * *"}), NOW
    )
    assert statuses == [ops.BlockedStatus("scheduled full backup of 2026-11-26 02:00Z missed")]


def test_backup_statuses_incremental_schedule_missed():
    data = PeerAppData(
        backup_stanza="x", backup_fired={"incremental": "2026-11-26T02:30:00+00:00"}
    )
    options = {"backup-schedule-incremental": "30 * * * *"}
    assert backup_statuses(data, RELATED, schedule(**options), NOW) == [
        ops.BlockedStatus("scheduled incremental backup of 2026-11-26 02:30Z missed")
    ]


@pytest.mark.parametrize(
    ("fired", "succeeded", "now"),
    [
        ({}, {}, NOW),  # never fired: the schedule was set after it was due
        ({"full": "2026-11-26T02:00:00+00:00"}, {"full": "2026-11-26T02:04:00+00:00"}, NOW),
        # Within the grace period the backup may still be running: yesterday's counts.
        (
            {"full": "2026-11-26T02:00:00+00:00"},
            {"full": "2026-11-25T02:04:00+00:00"},
            datetime.datetime(2026, 11, 26, 2, 20, tzinfo=UTC),
        ),
    ],
    ids=["never-fired", "succeeded", "within-grace"],
)
def test_backup_statuses_schedule_not_missed(
    fired: dict[str, str], succeeded: dict[str, str], now: datetime.datetime
):
    data = PeerAppData(backup_stanza="x", backup_fired=fired, backup_succeeded=succeeded)
    options = {"backup-schedule-full": "0 2 * * *"}
    assert backup_statuses(data, RELATED, schedule(**options), now) == []


def test_backup_statuses_no_schedule_or_no_stanza_never_missed():
    data = PeerAppData(backup_stanza="x", backup_fired={"full": "2026-11-20T02:00:00+00:00"})
    assert backup_statuses(data, RELATED, schedule(), NOW) == []
    data = data.model_copy(update={"backup_stanza": ""})
    options = {"backup-schedule-full": "0 2 * * *"}
    assert backup_statuses(data, RELATED, schedule(**options), NOW) == []


def test_last_backup():
    assert backups.last_backup(snapshot()) == ""
    data = PeerAppData(
        backup_succeeded={
            "full": "2026-11-26T15:39:53+00:00",
            "incremental": "2026-11-27T03:00:10+00:00",
            "differential": "2026-11-26T20:00:00+00:00",
        }
    )
    assert backups.last_backup(snapshot(peer_data=data)) == "last backup 2026-11-27 03:00Z"


def test_app_status_shows_a_missed_schedule(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    yesterday = datetime.datetime.now(UTC) - datetime.timedelta(days=1)
    state = backup_state(
        image,
        config={"backup-schedule-full": "*/5 * * * *"},
        app_data={"backup-fired": {"full": yesterday.isoformat()}},
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert out.app_status.name == "blocked"
    assert out.app_status.message.startswith("scheduled full backup of ")
    assert out.app_status.message.endswith("Z missed")

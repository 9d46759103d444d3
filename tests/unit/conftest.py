"""Fakes for charm state-transition tests: Patroni's REST API, PostgreSQL roles and Kubernetes."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import posixpath
import re
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from cryptography import x509
from ops import testing

import backups
import charm
import k8s
import system_users
from charms.postgresql_k8s.v0 import postgresql as pglib
from state import PeerAppData
from workload import internal_tls, layout, patroni_client, pgbackrest, scheduler

APP = "postgresql-k8s"


@dataclasses.dataclass
class FakePatroni:
    """Patroni's REST API as the charm sees it, one cluster shared by every member's URL."""

    members: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    reachable: bool = True
    calls: list[tuple[str, str, Any]] = dataclasses.field(default_factory=list)
    refuse_switchover: bool = False
    # Called on every GET /cluster, to let a test change the cluster as time passes.
    on_cluster: Any = None

    def add_member(self, name: str, role: str, state: str | None = None, **extra: Any) -> None:
        index = int(name.rsplit("-", 1)[1])
        host = f"10.1.0.{index + 10}"
        self.members.append(
            {
                "name": name,
                "role": role,
                "state": state or ("running" if role == "leader" else "streaming"),
                "host": host,
                "port": 5432,
                "api_url": f"http://{host}:8008/patroni",
                "timeline": 1,
                "lag": 0,
                **extra,
            }
        )

    def member(self, name: str) -> dict[str, Any]:
        return next(m for m in self.members if m["name"] == name)

    def writes(self, method: str | None = None) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] != "GET" and (method is None or c[0] == method)]

    def respond(self, method: str, url: str, body: Any) -> requests.Response:
        if not self.reachable:
            raise requests.ConnectionError("connection refused")
        path = "/" + url.split("/", 3)[3]
        self.calls.append((method, path, body))
        handler = getattr(self, f"_{method.lower()}_{path.strip('/').replace('/', '_')}", None)
        status, payload = handler(url, body) if handler else (404, {"error": "no such endpoint"})
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode()
        return response

    def _get_cluster(self, url: str, body: Any) -> tuple[int, Any]:
        if self.on_cluster is not None:
            self.on_cluster(self)
        return 200, {"members": self.members, "scope": APP}

    def _get_config(self, url: str, body: Any) -> tuple[int, Any]:
        return 200, self.config

    def _patch_config(self, url: str, body: Any) -> tuple[int, Any]:
        def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
            for key, value in patch.items():
                if value is None:
                    target.pop(key, None)
                elif isinstance(value, dict):
                    merge(target.setdefault(key, {}), value)
                else:
                    target[key] = value

        merge(self.config, body)
        return 200, self.config

    def _post_restart(self, url: str, body: Any) -> tuple[int, Any]:
        host = url.split("//", 1)[1].split(":", 1)[0]
        member = next(m for m in self.members if m["host"] == host)
        member.pop("pending_restart", None)
        return 200, "restarted"

    def _post_switchover(self, url: str, body: Any) -> tuple[int, Any]:
        candidate = self.member(body["candidate"])
        if self.refuse_switchover or candidate["role"] != "sync_standby":
            return 412, "candidate name does not match with sync_standby"
        old = self.member(body["leader"])
        old["role"], candidate["role"] = "sync_standby", "leader"
        candidate["state"], old["state"] = "running", "streaming"
        return 200, "Successfully switched over"

    def _post_reload(self, url: str, body: Any) -> tuple[int, Any]:
        return 202, "reload scheduled"


@dataclasses.dataclass
class FakeDatabase:
    """PostgreSQL roles as the library would manage them on the primary."""

    passwords: dict[str, str] = dataclasses.field(default_factory=dict)
    hosts: list[str] = dataclasses.field(default_factory=list)
    fail: bool = False

    def __call__(self, *, primary_host: str, user: str, password: str, **_: Any) -> FakeDatabase:
        self.hosts.append(primary_host)
        return self

    def _check(self) -> None:
        if self.fail:
            raise pglib.PostgreSQLConnectionError("connection refused")

    def user_exists(self, user: str) -> bool:
        self._check()
        return user in self.passwords

    def create_user(self, user: str, password: str | None = None, **attrs: Any) -> None:
        self._check()
        self.passwords[user] = password or ""
        self.attributes[user] = attrs

    def alter_user_password(self, user: str, password: str) -> None:
        self._check()
        self.passwords[user] = password

    def password_matches(self, user: str, password: str) -> bool:
        self._check()
        return self.passwords.get(user) == password

    # What client relations and extensions need.

    databases: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> owner
    attributes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    extensions: set[str] = dataclasses.field(default_factory=set)
    in_use: set[str] = dataclasses.field(default_factory=set)  # extensions with dependents
    dropped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    version: str = "16.4"

    def list_users(self) -> list[str]:
        self._check()
        return sorted(self.passwords)

    def create_database(self, database: str, owner: str, **_: Any) -> None:
        self._check()
        if self.databases.setdefault(database, owner) != owner:
            raise pglib.PostgreSQLCreateDatabaseError(f"{database} exists with another owner")

    def drop_user(self, user: str, *, reassign_owned_to: str) -> None:
        self._check()
        if self.passwords.pop(user, None) is not None:
            self.dropped.append((user, reassign_owned_to))

    def enable_extensions(self, extensions: dict[str, bool], databases: Any = None) -> None:
        self._check()
        if any(not on and name in self.in_use for name, on in extensions.items()):
            raise pglib.PostgreSQLExtensionInUseError("extension is in use")
        self.extensions |= {name for name, on in extensions.items() if on}
        self.extensions -= {name for name, on in extensions.items() if not on}

    def revoke_roles(self, user: str, roles: list[str]) -> None:
        self._check()
        attrs = self.attributes.get(user, {})
        attrs["in_roles"] = tuple(r for r in attrs.get("in_roles", ()) if r not in roles)

    def get_server_version(self) -> str:
        self._check()
        return self.version

    # What the archive-lag status reads: pg_stat_archiver's last archived WAL, the current WAL
    # file, and whether archiving fails; or an error the query raises.

    archiver: tuple[str | None, str, bool] = (None, "000000010000000000000001", False)
    query_error: Exception | None = None
    # Sessions of dropped users each member still has (host -> count), closed by a sweep.
    orphaned: dict[str, int] = dataclasses.field(default_factory=dict)
    swept: list[str] = dataclasses.field(default_factory=list)
    # Functions the backup role may execute ("GRANT EXECUTE ON FUNCTION <f> TO backup" seen).
    granted_functions: list[str] = dataclasses.field(default_factory=list)

    def connect(self, database: str | None = None) -> FakeConnection:
        self._check()
        return FakeConnection(self, host=self.hosts[-1] if self.hosts else "")


@dataclasses.dataclass
class FakeConnection:
    """A connection answering the archive-lag query with FakeDatabase.archiver, and the sweep of
    dropped users' sessions with FakeDatabase.orphaned."""

    db: FakeDatabase
    host: str = ""
    row: tuple[Any, ...] | None = None

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def execute(self, query: Any, params: Any = ()) -> FakeConnection:
        if self.db.query_error is not None:
            raise self.db.query_error
        if "pg_terminate_backend" in str(query):
            self.db.swept.append(self.host)
            self.row = (self.db.orphaned.pop(self.host, 0),)
            return self
        if "has_function_privilege" in str(query):
            assert params[0] == "backup", params
            self.row = (params[1] in self.db.granted_functions,)
            return self
        if grant := re.fullmatch(r"GRANT EXECUTE ON FUNCTION (.+) TO backup", str(query)):
            self.db.granted_functions.append(grant.group(1))
            return self
        assert "pg_stat_archiver" in str(query), query
        self.row = self.db.archiver
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.row


@dataclasses.dataclass
class FakeKubernetes:
    """The charm's Kubernetes calls, recorded."""

    missing: list[str] = dataclasses.field(default_factory=list)
    labelled: list[str] = dataclasses.field(default_factory=list)
    services_applied: int = 0
    fail: bool = False

    def missing_permissions(self) -> list[str]:
        return self.missing

    def label_pod(self, pod: str) -> None:
        if self.fail:
            raise k8s.KubernetesError("forbidden")
        self.labelled.append(pod)

    def apply_services(self) -> None:
        self.services_applied += 1


@pytest.fixture
def patroni(monkeypatch: pytest.MonkeyPatch) -> FakePatroni:
    fake = FakePatroni()

    def send(
        self: patroni_client.PatroniClient, method: str, path: str, body: Any, *_: Any
    ) -> requests.Response:
        try:
            return fake.respond(method, self.base_url + path, body)
        except requests.RequestException as e:
            raise patroni_client.PatroniUnreachableError(str(e)) from e

    monkeypatch.setattr(patroni_client.PatroniClient, "_send", send)
    monkeypatch.setattr(patroni_client.time, "sleep", lambda _: None)
    return fake


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> FakeDatabase:
    fake = FakeDatabase()
    monkeypatch.setattr(pglib, "PostgreSQL", fake)
    return fake


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> FakeKubernetes:
    fake = FakeKubernetes()
    monkeypatch.setattr(k8s, "Kubernetes", lambda *_, **__: fake)
    return fake


@pytest.fixture
def ctx(
    patroni: FakePatroni, database: FakeDatabase, kube: FakeKubernetes
) -> testing.Context[charm.PostgresqlK8sCharm]:
    return testing.Context(charm.PostgresqlK8sCharm)


@pytest.fixture
def image(tmp_path: Path) -> dict[str, testing.Mount]:
    """The image's /usr/lib/postgresql holding PostgreSQL 16, its cron spool, and the workload's
    home, which persist across runs like a pod's filesystem (ops.testing wipes anything else)."""
    root = tmp_path / "image-pg"
    (root / "16" / "bin").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "crontabs").mkdir()
    spool = posixpath.dirname(scheduler.CRONTAB_PATH)
    return {
        "image": testing.Mount(location=layout.PG_BASE_DIR, source=root),
        "home": testing.Mount(location=layout.HOME, source=tmp_path / "home"),
        "cron": testing.Mount(location=spool, source=tmp_path / "crontabs"),
    }


def container(
    mounts: dict[str, testing.Mount], can_connect: bool = True, **kwargs: Any
) -> testing.Container:
    # Storage arrives root-owned; the charm hands it to the workload user with chown/chmod.
    kwargs.setdefault("execs", {testing.Exec(["chown"]), testing.Exec(["chmod"])})
    return testing.Container(layout.CONTAINER, can_connect=can_connect, mounts=mounts, **kwargs)


def system_secret() -> testing.Secret:
    return testing.Secret(
        tracked_content=system_users.initial_content(),
        owner="app",
        label=system_users.SECRET_LABEL,
    )


def peers(secret: testing.Secret | None, units: int = 3, **app_data: Any) -> testing.PeerRelation:
    data = {"system-users-secret": json.dumps(secret.id)} if secret else {}
    data |= {k: json.dumps(v) for k, v in app_data.items()}
    return testing.PeerRelation(
        "database-peers",
        local_app_data=data,
        peers_data={i: {} for i in range(1, units)},
    )


# -- backups: the s3 relation, the members' TLS secret, pgBackRest's command lines -------------

S3_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
S3_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
S3_CA = internal_tls.generate("s3", ["s3.example.com"]).ca
# Every pgBackRest command the charm runs starts so (see workload.pgbackrest.command).
PGBACKREST = ["pgbackrest", f"--config={pgbackrest.CONF_FILE}", f"--stanza={APP}"]
# What the charm's probes get before the command name, to fail fast: stanza-create, and info
# (which reaches no database, and which pgBackRest refuses a --db-timeout).
PROBE = ["--io-timeout=15", "--db-timeout=15", "--protocol-timeout=30"]
INFO_PROBE = ["--io-timeout=15", "--protocol-timeout=30"]
_S3_SECRET_FIELDS = ("access-key", "secret-key")


def s3_fields(**changes: Any) -> dict[str, Any]:
    """What an s3 provider publishes, by the interface's field names; None drops a field."""
    fields: dict[str, Any] = {
        "bucket": "backups",
        "endpoint": "https://s3.example.com:9000",
        "region": "eu-west-1",
        "path": "/team/pg",
        "s3-uri-style": "path",
        "access-key": S3_ACCESS_KEY,
        "secret-key": S3_SECRET_KEY,
        "tls-ca-chain": [S3_CA],
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def s3_relation(**changes: Any) -> tuple[testing.Relation, testing.Secret]:
    """The provider's side as object-storage-charmlib lays it out: the key pair in a secret
    granted to the relation (its id in `secret-extra`), the other fields in the app databag."""
    fields = s3_fields(**changes)
    secret = testing.Secret(
        tracked_content={k: fields[k] for k in _S3_SECRET_FIELDS if fields.get(k)}
    )
    data = {"version": "1", "secret-extra": secret.id}
    for key, value in fields.items():
        if key not in _S3_SECRET_FIELDS:
            data[key] = value if isinstance(value, str) else json.dumps(value)
    relation = testing.Relation(
        "s3-parameters", remote_app_name="s3-integrator", remote_app_data=data
    )
    return relation, secret


def stanza_digest(**changes: Any) -> str:
    """What the leader records in `backup-stanza` once the stanza exists for these settings."""
    settings = pgbackrest.s3_settings(s3_fields(**changes))
    return backups.settings_digest(SimpleNamespace(app_name=APP), settings)  # type: ignore[arg-type]


@functools.cache
def _tls_content() -> dict[str, str]:
    made: dict[str, str] = {}

    class App:
        def add_secret(self, content: dict[str, str], **_: Any) -> Any:
            made.update(content)
            return SimpleNamespace(id="secret:made-by-the-test")

    state = SimpleNamespace(peer_data=PeerAppData(), app_name=APP, namespace="test-model")
    backups.ensure_tls(App(), None, state)  # type: ignore[arg-type]
    return made


def tls_secret() -> testing.Secret:
    """The members' TLS secret as the leader made it earlier (ensure_tls's own content)."""
    return testing.Secret(
        tracked_content=dict(_tls_content()), owner="app", label=backups.TLS_SECRET_LABEL
    )


def backup_state(
    image: dict[str, testing.Mount],
    *,
    leader: bool = True,
    units: int = 3,
    s3: dict[str, Any] | str | None = "valid",
    stanza: bool = True,
    tls: bool = True,
    servers: bool = True,
    app_data: dict[str, Any] | None = None,
    unit_data: dict[str, str] | None = None,
    peers_data: dict[int, dict[str, str]] | None = None,
    execs: Iterable[testing.Exec] = (),
    service_statuses: dict[str, Any] | None = None,
    notices: Iterable[testing.Notice] = (),
    **kwargs: Any,
) -> testing.State:
    """A deployed unit with an s3-parameters relation.

    `s3`: "valid", a dict of changes to the valid fields, "unanswered" (related, nothing
    published yet) or None (not related). `stanza`: the leader created the stanza for these
    settings (archiving is on). `tls`: the leader made the members' TLS secret. `servers`: every
    unit, this one included, said in its peer databag that its pgBackRest server runs with these
    settings (what the leader waits for before it creates the stanza); `unit_data` and
    `peers_data` override it.
    """
    system = system_secret()
    secrets = [system]
    relations: list[testing.RelationBase] = []
    data = dict(app_data or {})
    changes = s3 if isinstance(s3, dict) else {}
    if s3 == "unanswered":
        relations.append(testing.Relation("s3-parameters", remote_app_name="s3-integrator"))
    elif s3 is not None:
        relation, secret = s3_relation(**changes)
        relations.append(relation)
        secrets.append(secret)
    if stanza:
        data.setdefault("backup-stanza", stanza_digest(**changes))
    if tls:
        secret = tls_secret()
        secrets.append(secret)
        data.setdefault("backup-tls-secret", secret.id)
    acks: dict[str, str] = {}
    if servers and tls and s3 not in (None, "unanswered"):
        # Invalid settings: no server runs with them.
        with contextlib.suppress(pgbackrest.InvalidS3SettingsError):
            acks[backups.SERVER_KEY] = stanza_digest(**changes)
    peer = peers(system, units=units, **data)
    if peers_data is None:
        peers_data = {i: dict(acks) for i in peer.peers_data}
    peer = dataclasses.replace(
        peer,
        local_unit_data={**peer.local_unit_data, **acks, **(unit_data or {})},
        peers_data=peers_data,
    )
    ctr = container(
        image,
        execs={testing.Exec(["chown"]), testing.Exec(["chmod"]), *execs},
        service_statuses=service_statuses or {},
        notices=list(notices),
    )
    return testing.State(
        leader=leader,
        containers=[ctr],
        relations=[peer, *relations],
        secrets=secrets,
        planned_units=units,
        **kwargs,
    )


def peer_app_data(state: testing.State) -> PeerAppData:
    """The peer application data as every unit reads it."""
    relation = state.get_relations("database-peers")[0]
    return PeerAppData.model_validate(
        {k: json.loads(v) for k, v in relation.local_app_data.items() if v}
    )


def peer_unit_data(state: testing.State) -> dict[str, str]:
    """This unit's databag in the peer relation."""
    return dict(state.get_relations("database-peers")[0].local_unit_data)


def info_json(*backups_: tuple[str, str, int], stanza: str = APP) -> str:
    """`pgbackrest info --output=json` for a stanza holding backups (label, type, stop epoch)."""
    listed = [
        {
            "label": label,
            "type": kind,
            "prior": None if kind == "full" else backups_[0][0],
            "timestamp": {"start": stop - 60, "stop": stop},
            "info": {"size": 23068672, "delta": 23068672, "repository": {"size": 2812118}},
            "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000003"},
            "annotation": {"requested-by": "test"},
            "error": False,
        }
        for label, kind, stop in backups_
    ]
    return json.dumps(
        [
            {
                "name": stanza,
                "status": {
                    "code": 0 if listed else 2,
                    "message": "ok" if listed else "no valid backups",
                },
                "backup": listed,
                "archive": [
                    {"min": "000000010000000000000001", "max": "000000010000000000000009"}
                ],
                "db": [{"id": 1, "system-id": 7712505333743726970, "version": "16"}],
                "repo": [{"key": 1, "status": {"code": 0, "message": "ok"}}],
            }
        ]
    )


def tls_parts(content: dict[str, str]) -> tuple[str, str, str]:
    """The CA, the members' certificate and its key in the TLS secret, whatever its keys."""

    def is_ca(pem: str) -> bool:
        cert = x509.load_pem_x509_certificate(pem.encode())
        try:
            return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False

    certs = [v for v in content.values() if "BEGIN CERTIFICATE" in v]
    key = next(v for v in content.values() if "PRIVATE KEY" in v)
    return next(c for c in certs if is_ca(c)), next(c for c in certs if not is_ca(c)), key

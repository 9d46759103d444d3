"""The `database` relation through the charm's hooks: requirers' view and the database's."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import ops
import psycopg
import pytest
from dpcharmlibs import interfaces
from ops import testing

import charm
from charms.postgresql_k8s.v0 import postgresql as pglib
from components import client_policy, clients
from tests.unit.builders import (
    APP,
    Ctx,
    FakeDatabase,
    FakePatroni,
    container,
    healthy_cluster,
    patroni_yml,
    peer_app_data,
    peers,
    system_secret,
)

MODEL = "prod"
PRIMARY = f"{APP}-primary.{MODEL}.svc.cluster.local:5432"
REPLICAS = f"{APP}-replicas.{MODEL}.svc.cluster.local:5432"
SALT = "0123456789abcdef"
V0_SECRETS = ["username", "password", "tls", "tls-ca", "uris", "read-only-uris"]


# -- fakes -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Logins:
    """Client logins the leader tries on each member; hosts in `refused` do not admit yet."""

    refused: set[str] = dataclasses.field(default_factory=set[str])
    tried: list[tuple[str, str, str]] = dataclasses.field(
        default_factory=list[tuple[str, str, str]]
    )

    def admits(self, host: str, plan: client_policy.ClientPlan, password: str) -> bool:
        self.tried.append((host, plan.user, password))
        return host not in self.refused


class Clock:
    """Virtual time for the leader's bounded wait, so a refused login costs no real seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def logins(monkeypatch: pytest.MonkeyPatch) -> Logins:
    fake = Logins()
    monkeypatch.setattr(clients, "_admits", fake.admits)
    monkeypatch.setattr(clients, "time", Clock())
    return fake


@pytest.fixture
def served(patroni: FakePatroni, logins: Logins) -> FakePatroni:
    """A healthy three-member cluster whose members admit every client login."""
    healthy_cluster(patroni)
    return patroni


# -- what requirers write ----------------------------------------------------------------------


def v1_relation(database: str = "mydb", app: str = "myapp", **fields: Any) -> testing.Relation:
    """A relation whose requirer wrote one V1 request, as the library's requirer side does."""
    request = interfaces.RequirerCommonModel(
        resource=database, salt=SALT, request_id=interfaces.gen_hash(database, SALT), **fields
    )
    contract = interfaces.RequirerDataContractV1[interfaces.RequirerCommonModel](
        requests=[request]
    )
    dumped = contract.model_dump(mode="json", exclude_none=True)
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in dumped.items()}
    return testing.Relation("database", remote_app_name=app, remote_app_data=data)


def v0_relation(
    database: str = "olddb", app: str = "oldapp", secrets: bool = True, roles: str | None = None
) -> testing.Relation:
    """A V0 requirer: `database` and, unless it predates secrets, `requested-secrets`."""
    data = {"database": database}
    if roles is not None:
        data["extra-user-roles"] = roles
    if secrets:
        data["requested-secrets"] = json.dumps(V0_SECRETS)
    return testing.Relation("database", remote_app_name=app, remote_app_data=data)


# -- cluster state and hooks ---------------------------------------------------------------------


def cluster_state(
    image: dict[str, testing.Mount],
    *relations: testing.RelationBase,
    leader: bool = True,
    peer_app: dict[str, Any] | None = None,
    config: dict[str, str | int | float | bool] | None = None,
) -> testing.State:
    """Three planned units; this one (unit 0) is the leader unless told otherwise."""
    secret = system_secret()
    return testing.State(
        leader=leader,
        containers=[container(image)],
        relations=[peers(secret, **(peer_app or {})), *relations],
        secrets=[secret],
        planned_units=3,
        model=testing.Model(name=MODEL),
        config=config or {},
    )


def peer_relation(state: testing.State) -> testing.PeerRelation:
    return next(r for r in state.relations if isinstance(r, testing.PeerRelation))


def peer_app(state: testing.State, key: str) -> Any:
    return json.loads(peer_relation(state).local_app_data[key])


def acknowledged(state: testing.State, units: tuple[int, ...] = (1, 2)) -> testing.State:
    """The other units rendered the leader's client rules: they ack its digest."""
    peer = peer_relation(state)
    digest = peer.local_unit_data[clients.UNIT_DIGEST_KEY]
    data = {i: {**peer.peers_data[i]} for i in peer.peers_data}
    for i in units:
        data[i][clients.UNIT_DIGEST_KEY] = digest
    peer = dataclasses.replace(peer, peers_data=data)
    others = [r for r in state.relations if r.id != peer.id]
    return dataclasses.replace(state, relations=[peer, *others])


def serve(ctx: Ctx, state: testing.State) -> testing.State:
    """Two leader hooks: the first makes users and rules, the second publishes once acked."""
    out = ctx.run(ctx.on.update_status(), state)
    return ctx.run(ctx.on.update_status(), acknowledged(out))


# -- what requirers read -------------------------------------------------------------------------


def databag(state: testing.State, relation: testing.Relation) -> dict[str, str]:
    """The charm's application databag as the requirer sees it."""
    return dict(state.get_relation(relation.id).local_app_data)


def secret_for(state: testing.State, relation: testing.Relation, uri: str) -> dict[str, str]:
    """A secret's content, asserting the requirer's application was granted it."""
    secret = state.get_secret(id=uri)
    assert relation.remote_app_name in secret.remote_grants.get(relation.id, frozenset[str]())
    return dict(secret.latest_content or {})


def v1_response(state: testing.State, relation: testing.Relation) -> dict[str, Any]:
    """The response to the request, with the user secret's fields merged in."""
    responses = json.loads(databag(state, relation).get("requests", "[]"))
    (response,) = [r for r in responses if r.get("request-id")]
    return {**response, **secret_for(state, relation, response["secret-user"])}


def revisions(state: testing.State) -> dict[str | None, tuple[int, Any]]:
    """Each secret's latest revision number and content, by label."""
    # ops.testing keeps the revision Juju would report in a private attribute.
    return {
        s.label: (getattr(s, "_latest_revision"), s.latest_content)  # noqa: B009
        for s in state.secrets
    }


def client_users(database: FakeDatabase) -> set[str]:
    return {u for u in database.passwords if client_policy.relation_of_user(u) is not None}


# -- V1: the happy path ------------------------------------------------------------------------


def test_v1_request_is_served_once_every_member_acked(
    ctx: Ctx,
    image: dict[str, testing.Mount],
    served: FakePatroni,
    database: FakeDatabase,
    logins: Logins,
):
    relation = v1_relation()
    out = serve(ctx, cluster_state(image, relation))

    response = v1_response(out, relation)
    user, password = response["username"], response["password"]
    assert client_policy.relation_of_user(user) == relation.id
    assert user.startswith(f"relation_{relation.id}_")
    assert response["resource"] == "mydb"
    assert response["endpoints"] == PRIMARY
    assert response["read-only-endpoints"] == REPLICAS
    assert response["uris"] == f"postgresql://{user}:{password}@{PRIMARY}/mydb"
    assert response["read-only-uris"] == f"postgresql://{user}:{password}@{REPLICAS}/mydb"
    assert response["version"] == database.version
    responses = json.loads(databag(out, relation)["requests"])
    assert all(r.get("password") is None for r in responses)  # only in the secret
    assert password not in json.dumps(databag(out, relation))

    assert database.databases == {"mydb": "mydb_owner"}
    assert database.attributes["mydb_owner"]["login"] is False
    assert database.passwords[user] == password
    assert database.attributes[user]["in_roles"] == ("mydb_owner",)
    assert not database.attributes[user]["superuser"]
    # Every member was seen to admit the login before the requirer was told.
    hosts = {m["host"] for m in served.members}
    assert {(h, user, password) for h in hosts} <= set(logins.tried)
    assert out.app_status == ops.ActiveStatus()


def test_extra_user_roles_reach_the_database(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    relation = v1_relation(extra_user_roles="CREATEDB,pg_read_all_settings")
    out = serve(ctx, cluster_state(image, relation))
    user = v1_response(out, relation)["username"]
    assert database.attributes[user]["createdb"] is True
    assert database.attributes[user]["in_roles"] == ("mydb_owner", "pg_read_all_settings")


def test_extra_user_roles_changed_later_reach_the_database(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    relation = v1_relation()
    out = serve(ctx, cluster_state(image, relation))
    user = v1_response(out, relation)["username"]
    changed = dataclasses.replace(
        out.get_relation(relation.id),
        remote_app_data=v1_relation(extra_user_roles="createdb").remote_app_data,
    )
    others = [r for r in out.relations if r.id != relation.id]
    ctx.run(
        ctx.on.relation_changed(changed, remote_unit=0),
        dataclasses.replace(out, relations=[*others, changed]),
    )
    assert database.attributes[user]["createdb"] is True


def test_superuser_only_where_the_operator_allowed_it_for_this_relation(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    relation = v1_relation(app="pgbouncer-k8s", extra_user_roles="superuser")
    out = serve(ctx, cluster_state(image, relation))
    assert client_users(database) == set()  # an alias alone is no decision
    entry = f"pgbouncer-k8s/{relation.id}:superuser"
    assert out.app_status == ops.BlockedStatus(
        f"database relation {relation.id}: pgbouncer-k8s: superuser needs an operator's decision:"
        f" `juju config {APP} client-privileges={entry}` (added to the entries already there)"
    )
    out = serve(ctx, dataclasses.replace(out, config={"client-privileges": entry}))
    user = v1_response(out, relation)["username"]
    assert database.attributes[user]["superuser"] is True
    assert peer_app_data(out).client_elevated == [user]


def test_a_privilege_taken_back_is_revoked_and_the_sessions_end(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    relation = v1_relation(app="pgbouncer-k8s", extra_user_roles="superuser,pg_read_all_data")
    entry = f"pgbouncer-k8s/{relation.id}:superuser+pg_read_all_data"
    out = serve(ctx, cluster_state(image, relation, config={"client-privileges": entry}))
    user = v1_response(out, relation)["username"]
    assert database.attributes[user]["superuser"] is True

    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config={}))
    assert database.attributes[user]["superuser"] is False
    assert database.attributes[user]["createrole"] is False
    assert "pg_read_all_data" not in database.attributes[user]["in_roles"]
    assert database.sessions_ended == [user]
    assert peer_app_data(out).client_elevated == []
    assert out.app_status.name == "blocked"
    # Refused now: its user goes too (its objects to the database's owner).
    assert (user, "mydb_owner") in database.dropped
    # Once taken back, nothing more happens on the next hooks.
    ctx.run(ctx.on.update_status(), out)
    assert database.sessions_ended == [user]


def test_a_database_of_another_application_is_refused_naming_both(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    shop = v1_relation("orders", app="shop")
    out = serve(ctx, cluster_state(image, shop))
    owner_user = v1_response(out, shop)["username"]
    evil = v1_relation("orders", app="evil", extra_user_roles="createdb")
    out = serve(ctx, dataclasses.replace(out, relations=[*out.relations, evil]))
    assert client_users(database) == {owner_user}
    assert peer_app_data(out).client_databases == {"orders": "shop"}
    assert out.app_status == ops.BlockedStatus(
        f"database relation {evil.id}: evil: database orders belongs to shop (relation"
        f" {shop.id}); to share it: `juju config {APP} shared-databases=orders:shop+evil`"
    )
    shared = {"shared-databases": "orders:shop+evil"}
    out = serve(ctx, dataclasses.replace(out, config=shared))
    evil_user = v1_response(out, evil)["username"]
    assert database.attributes[evil_user]["in_roles"] == ("orders_owner",)
    # Sharing taken back: the other application's user goes, the owner's stays.
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config={}))
    assert (evil_user, "orders_owner") in database.dropped
    assert client_users(database) == {owner_user}
    assert ("orders", evil_user) not in peer_app_data(out).client_rules


def test_an_owner_role_someone_else_made_is_not_adopted(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    # A CREATEROLE client on PostgreSQL 16 made the role first: it holds ADMIN on it.
    database.foreign_roles["orders_owner"] = pglib.RoleInfo(
        can_login=False, superuser=False, members=("relation_3_aa",), admins=("relation_3_aa",)
    )
    shop = v1_relation("orders", app="shop")
    out = serve(ctx, cluster_state(image, shop))
    assert "orders" not in database.databases
    assert client_users(database) == set()
    assert "role orders_owner exists and was not made by this charm" in str(out.app_status)


def test_read_only_endpoint_is_the_primary_without_streaming_replica(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, logins: Logins
):
    for member in served.members[1:]:
        member["state"] = "stopped"
    relation = v1_relation()
    # Stopped members render no rules and are not waited for: one hook after the first serves.
    out = ctx.run(ctx.on.update_status(), cluster_state(image, relation))
    out = ctx.run(ctx.on.update_status(), out)
    response = v1_response(out, relation)
    assert response["read-only-endpoints"] == PRIMARY
    assert response["read-only-uris"].endswith(f"@{PRIMARY}/mydb")
    assert {host for host, _, _ in logins.tried} == {served.members[0]["host"]}


# -- publishing waits for every running member ---------------------------------------------------


def test_not_published_until_every_running_member_acked(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    relation = v1_relation()
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), cluster_state(image, relation))
    assert "requests" not in databag(out, relation)
    assert len(client_users(database)) == 1  # created, but not handed out yet
    assert out.app_status == ops.ActiveStatus()

    out = ctx.run(ctx.on.update_status(), acknowledged(out, units=(1,)))
    assert "requests" not in databag(out, relation)
    assert out.app_status == ops.ActiveStatus()

    out = ctx.run(ctx.on.update_status(), acknowledged(out))
    assert v1_response(out, relation)["username"] in client_users(database)


def test_not_published_while_a_member_refuses_the_login(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, logins: Logins
):
    logins.refused = {served.members[2]["host"]}
    relation = v1_relation()
    out = serve(ctx, cluster_state(image, relation))
    assert "requests" not in databag(out, relation)
    assert peer_app(out, "client-admitted") == []
    assert out.app_status == ops.ActiveStatus()

    logins.refused.clear()  # Patroni's next loop re-read pg_hba on that member
    out = ctx.run(ctx.on.update_status(), out)
    user = v1_response(out, relation)["username"]
    assert peer_app(out, "client-admitted") == [user]


def test_an_admitted_user_is_not_tried_again(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, logins: Logins
):
    out = serve(ctx, cluster_state(image, v1_relation()))
    logins.tried.clear()
    ctx.run(ctx.on.update_status(), out)
    assert logins.tried == []


# -- V0 requirers ------------------------------------------------------------------------------


def test_v0_requirer_with_requested_secrets_gets_a_user_secret(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    relation = v0_relation()
    out = serve(ctx, cluster_state(image, relation))
    data = databag(out, relation)
    assert data["endpoints"] == PRIMARY
    assert data["read-only-endpoints"] == REPLICAS
    assert data["version"] == database.version
    assert "password" not in data
    assert "username" not in data
    content = secret_for(out, relation, data["secret-user"])
    user, password = content["username"], content["password"]
    assert user == f"relation_{relation.id}"
    assert content["uris"] == f"postgresql://{user}:{password}@{PRIMARY}/olddb"
    assert content["read-only-uris"] == f"postgresql://{user}:{password}@{REPLICAS}/olddb"
    assert database.passwords[user] == password
    assert database.databases == {"olddb": "olddb_owner"}


def test_v0_requirer_with_requested_secrets_reads_the_database_name(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni
):
    relation = v0_relation()
    out = serve(ctx, cluster_state(image, relation))
    assert databag(out, relation).get("database") == "olddb"


def test_old_v0_requirer_without_secrets_gets_plain_fields(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    relation = v0_relation(secrets=False, roles="createdb")
    out = serve(ctx, cluster_state(image, relation))
    data = databag(out, relation)
    user, password = data["username"], data["password"]
    assert user == f"relation_{relation.id}"
    assert database.passwords[user] == password
    assert database.attributes[user]["createdb"] is True
    assert data["database"] == "olddb"
    assert data["endpoints"] == PRIMARY
    assert data["read-only-endpoints"] == REPLICAS
    assert data["uris"] == f"postgresql://{user}:{password}@{PRIMARY}/olddb"
    assert data["read-only-uris"] == f"postgresql://{user}:{password}@{REPLICAS}/olddb"
    assert data["version"] == database.version
    assert "secret-user" not in data


# -- no primary ----------------------------------------------------------------------------------


def test_without_primary_nothing_is_created_until_one_is_elected(
    ctx: Ctx,
    image: dict[str, testing.Mount],
    patroni: FakePatroni,
    database: FakeDatabase,
    logins: Logins,
):
    patroni.add_member(f"{APP}-0", "replica", "running")
    patroni.add_member(f"{APP}-1", "replica", "streaming")
    relation = v1_relation()
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), cluster_state(image, relation))
    assert database.passwords == {}
    assert database.databases == {}
    assert "requests" not in databag(out, relation)
    assert out.app_status == ops.WaitingStatus("no primary: Patroni is electing one")

    patroni.members.clear()
    healthy_cluster(patroni)
    out = serve(ctx, out)
    assert v1_response(out, relation)["username"] in client_users(database)
    assert out.app_status == ops.ActiveStatus()


# -- hostile requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostile", "why"),
    [
        (v1_relation('x"; DROP DATABASE postgres; --', app="evil"), "is not allowed"),
        (v1_relation("postgres", app="evil"), "'postgres' is reserved"),
        (v1_relation("template1", app="evil"), "is reserved"),
        (v1_relation("evil", app="evil", extra_user_roles="superuser"),
         "operator's decision"),
        (v0_relation("evil", app="evil", roles="pg_execute_server_program"),
         "'pg_execute_server_program' is not allowed"),
        (v0_relation("evil", app="evil", roles="operator"), "not allowed"),
        (v1_relation("evil", app="evil", extensions="citext"), "plugin-citext-enable"),
        (testing.Relation("database", remote_app_name="evil",
                          remote_app_data={"version": "v1", "requests": "{not json"}),
         "the request is malformed"),
    ],
    ids=["quote", "postgres", "template1", "superuser", "server-program", "operator",
         "extension", "malformed"],
)  # fmt: skip
def test_hostile_request_blocks_and_changes_nothing(
    ctx: Ctx,
    image: dict[str, testing.Mount],
    served: FakePatroni,
    database: FakeDatabase,
    hostile: testing.Relation,
    why: str,
):
    good = v1_relation()
    out = serve(ctx, cluster_state(image, hostile, good))

    assert out.app_status.name == "blocked"
    assert out.app_status.message.startswith(f"database relation {hostile.id}: evil: ")
    assert why in out.app_status.message
    assert {client_policy.relation_of_user(u) for u in client_users(database)} == {good.id}
    assert database.databases == {"mydb": "mydb_owner"}
    assert database.extensions == set()
    assert databag(out, hostile) == {}
    assert v1_response(out, good)["resource"] == "mydb"


def test_another_apps_user_cannot_be_requested_as_a_role(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    good = v1_relation()
    out = serve(ctx, cluster_state(image, good))
    victim = v1_response(out, good)["username"]
    hostile = v0_relation("evil", app="evil", roles=victim)
    out = serve(ctx, dataclasses.replace(out, relations=[*out.relations, hostile]))
    assert out.app_status.name == "blocked"
    assert victim in out.app_status.message
    assert not any(victim in a.get("in_roles", ()) for a in database.attributes.values())


# -- relations that go -------------------------------------------------------------------------


def test_relation_broken_drops_the_user_and_keeps_the_database(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    relation, other = v1_relation(), v0_relation(secrets=False)
    out = serve(ctx, cluster_state(image, relation, other))
    user = v1_response(out, relation)["username"]
    other_user = f"relation_{other.id}"
    answered = databag(out, relation)
    uri = json.loads(answered["requests"])[0]["secret-user"]
    assert out.get_secret(id=uri)

    out = ctx.run(ctx.on.relation_broken(out.get_relation(relation.id)), out)
    # The credentials answered on it go with it.
    assert uri not in {s.id for s in out.secrets}
    assert database.dropped == [(user, "mydb_owner")]
    assert user not in database.passwords
    assert database.databases == {"mydb": "mydb_owner", "olddb": "olddb_owner"}
    assert "mydb_owner" in database.passwords  # the data's owner outlives the client
    assert peer_app(out, "client-rules") == [["olddb", other_user]]
    assert f'"{user}"' not in "\n".join(patroni_yml(ctx, out)["postgresql"]["pg_hba"])
    passwords = out.get_secret(label=clients.SECRET_LABEL).latest_content or {}
    assert user.replace("_", "-") not in passwords
    assert other_user.replace("_", "-") in passwords
    assert other_user in database.passwords


@pytest.mark.parametrize(("planned_units", "dropped"), [(3, True), (1, False)])
def test_departing_leader_drops_nothing(
    image: dict[str, testing.Mount],
    served: FakePatroni,
    database: FakeDatabase,
    kube: Any,
    planned_units: int,
    dropped: bool,
):
    # Relation 7 was served earlier; the leader is unit 1, removed when scaling to 1 unit
    # (e.g. while the whole application goes and every relation breaks).
    database.create_user("mydb_owner", None, login=False)
    database.create_database("mydb", "mydb_owner")
    database.create_user("relation_7", "secret-password", in_roles=("mydb_owner",))
    relation = testing.Relation("database", id=7, remote_app_name="oldapp",
                                remote_app_data={"database": "mydb"})  # fmt: skip
    secret = system_secret()
    peer = testing.PeerRelation(
        "database-peers",
        local_app_data={
            "system-users-secret": json.dumps(secret.id),
            "client-rules": json.dumps([["mydb", "relation_7"]]),
            "client-admitted": json.dumps(["relation_7"]),
        },
        peers_data={0: {}, 2: {}},
    )
    state = testing.State(
        leader=True,
        containers=[container(image)],
        relations=[peer, relation],
        secrets=[secret],
        planned_units=planned_units,
        model=testing.Model(name=MODEL),
    )
    unit1 = testing.Context(charm.PostgresqlK8sCharm, unit_id=1)
    unit1.run(unit1.on.relation_broken(relation), state)
    assert ("relation_7" not in database.passwords) is dropped
    assert database.dropped == ([("relation_7", "mydb_owner")] if dropped else [])
    assert database.databases == {"mydb": "mydb_owner"}


# -- non-leaders ---------------------------------------------------------------------------------


def test_non_leader_renders_rules_and_acks_but_serves_nothing(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    rules = [["all", "relation_6"], ["mydb", "relation_5_0a1b2c3d"]]
    relation = v1_relation()
    state = cluster_state(image, relation, leader=False, peer_app={"client-rules": rules})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    hba = patroni_yml(ctx, out)["postgresql"]["pg_hba"]
    # Quoted, so that a database named `all` is only that database, not a keyword.
    assert 'host "all" "relation_6" 0.0.0.0/0 scram-sha-256' in hba
    assert 'host "mydb" "relation_5_0a1b2c3d" 0.0.0.0/0 scram-sha-256' in hba
    assert 'host "mydb" "relation_5_0a1b2c3d" ::0/0 scram-sha-256' in hba
    assert not [line for line in hba if "relation_6" in line and '"all"' not in line]
    digest = peer_relation(out).local_unit_data[clients.UNIT_DIGEST_KEY]
    assert digest == client_policy.rules_digest(
        [("all", "relation_6"), ("mydb", "relation_5_0a1b2c3d")]
    )

    assert database.passwords == {}
    assert database.databases == {}
    assert databag(out, relation) == {}
    assert [s.label for s in out.secrets] == ["system-users"]


def test_non_leader_acks_a_rules_change(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni
):
    state = cluster_state(image, leader=False, peer_app={"client-rules": [["a", "relation_1"]]})
    out = ctx.run(ctx.on.update_status(), state)
    peer = peer_relation(out)
    changed = dataclasses.replace(
        peer, local_app_data={**peer.local_app_data, "client-rules": json.dumps([])}
    )
    out = ctx.run(ctx.on.relation_changed(changed), dataclasses.replace(out, relations=[changed]))
    assert peer_relation(out).local_unit_data[clients.UNIT_DIGEST_KEY] == (
        client_policy.rules_digest([])
    )
    assert not [
        line for line in patroni_yml(ctx, out)["postgresql"]["pg_hba"] if "relation_1" in line
    ]


# -- extensions ----------------------------------------------------------------------------------


def test_enabling_a_plugin_creates_the_extension(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    out = ctx.run(
        ctx.on.config_changed(), cluster_state(image, config={"plugin-citext-enable": True})
    )
    assert database.extensions == {"citext"}
    assert peer_app(out, "extensions-applied") == ["citext"]
    assert out.app_status == ops.ActiveStatus()


def test_disabling_an_extension_in_use_blocks_until_unused(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    out = ctx.run(
        ctx.on.config_changed(), cluster_state(image, config={"plugin-citext-enable": True})
    )
    database.in_use = {"citext"}
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config={}))
    out = ctx.run(ctx.on.update_status(), out)  # the status shows a hook late: see below
    assert out.app_status.name == "blocked"
    assert "plugin-citext-enable" in out.app_status.message
    assert database.extensions == {"citext"}

    database.in_use = set()  # the user dropped the objects that use it
    out = ctx.run(ctx.on.update_status(), out)
    assert database.extensions == set()
    assert peer_app(out, "extensions-applied") == []
    out = ctx.run(ctx.on.update_status(), out)
    assert out.app_status == ops.ActiveStatus()


def test_refused_request_blocks_in_the_same_hook(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni
):
    hostile = v1_relation("postgres", app="evil")
    out = ctx.run(ctx.on.relation_changed(hostile, remote_unit=0), cluster_state(image, hostile))
    assert out.app_status.name == "blocked"


def test_extension_in_use_blocks_in_the_same_hook(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    out = ctx.run(
        ctx.on.config_changed(), cluster_state(image, config={"plugin-citext-enable": True})
    )
    database.in_use = {"citext"}
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config={}))
    assert out.app_status.name == "blocked"


def test_request_for_a_disabled_extension_blocks_until_enabled(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni, database: FakeDatabase
):
    relation = v1_relation(extensions="citext")
    out = serve(ctx, cluster_state(image, relation))
    assert out.app_status.name == "blocked"
    assert out.app_status.message.startswith(f"database relation {relation.id}: myapp: ")
    assert "plugin-citext-enable=true" in out.app_status.message
    assert client_users(database) == set()

    out = serve(ctx, dataclasses.replace(out, config={"plugin-citext-enable": True}))
    assert database.extensions == {"citext"}
    assert v1_response(out, relation)["username"] in client_users(database)
    assert out.app_status == ops.ActiveStatus()


# -- compare before write -------------------------------------------------------------------------


def test_hooks_after_answering_a_v0_requirer_do_not_fail(
    ctx: Ctx, image: dict[str, testing.Mount], served: FakePatroni
):
    out = serve(ctx, cluster_state(image, v0_relation()))
    ctx.run(ctx.on.update_status(), out)


@pytest.mark.parametrize(
    "relation",
    [
        pytest.param(v1_relation(), id="v1"),
        pytest.param(v0_relation(), id="v0-secrets"),
        pytest.param(v0_relation(secrets=False), id="v0-plain"),
    ],
)
def test_second_identical_event_writes_nothing(
    ctx: Ctx,
    image: dict[str, testing.Mount],
    served: FakePatroni,
    database: FakeDatabase,
    relation: testing.Relation,
):
    out = serve(ctx, cluster_state(image, relation))
    before = (databag(out, relation), revisions(out), peer_relation(out), dict(database.passwords))
    again = ctx.run(ctx.on.relation_changed(out.get_relation(relation.id), remote_unit=0), out)
    assert databag(again, relation) == before[0]
    assert revisions(again) == before[1]
    assert peer_relation(again) == before[2]
    assert database.passwords == before[3]


# -- sessions of dropped users -------------------------------------------------------------------

POD_IP = "192.0.2.0"  # the unit's address in ops.testing's default network


def test_a_replica_closes_the_sessions_of_users_dropped_on_the_primary(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni, database: FakeDatabase
):
    """The DROP ROLE reaches the replica by replication, which leaves its sessions open."""
    healthy_cluster(patroni, leader=1)
    database.orphaned[POD_IP] = 2
    ctx.run(ctx.on.update_status(), cluster_state(image, leader=False))
    assert database.swept == [POD_IP]
    assert database.orphaned == {}


@pytest.mark.parametrize("state", ["starting", "stopped"])
def test_a_member_that_does_not_run_is_not_swept(
    ctx: Ctx,
    image: dict[str, testing.Mount],
    patroni: FakePatroni,
    database: FakeDatabase,
    state: str,
):
    healthy_cluster(patroni, leader=1)
    patroni.member(f"{APP}-0")["state"] = state
    database.orphaned[POD_IP] = 1
    ctx.run(ctx.on.update_status(), cluster_state(image, leader=False))
    assert database.swept == []


def test_a_failing_sweep_does_not_fail_the_hook(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni, leader=1)
    database.query_error = psycopg.OperationalError("the server closed the connection")
    out = ctx.run(ctx.on.update_status(), cluster_state(image, leader=False))
    assert out.unit_status == ops.ActiveStatus("replica")

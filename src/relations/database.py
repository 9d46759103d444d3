"""The `database` relation (postgresql_client): requests in, responses out, through dpcharmlibs."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import ops
import pydantic
from dpcharmlibs import interfaces

logger = logging.getLogger(__name__)

RELATION = "database"
# Fields an old (V0) requirer that never asked for secrets reads from the databag in clear.
_PLAIN_FIELDS = ("username", "password", "uris", "read-only-uris", "tls", "tls-ca")


@dataclasses.dataclass(frozen=True)
class ClientRequest:
    """One database request of a requirer, exactly as it sent it (nothing validated yet)."""

    relation_id: int
    app: str
    version: str  # "v0" (one request in the databag) or "v1" (a list of requests)
    request_id: str | None
    salt: str
    database: str
    extra_user_roles: str | None
    extensions: str | None
    wants_secrets: bool


@dataclasses.dataclass(frozen=True)
class RelationProblem:
    """Why a relation's databag cannot be served at all."""

    relation_id: int
    app: str
    message: str


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a requirer is told for one request."""

    username: str
    password: str
    database: str
    endpoints: str
    read_only_endpoints: str
    uris: str
    read_only_uris: str
    version: str
    tls: bool = False
    tls_ca: str | None = None


def _extra(model: pydantic.BaseModel, key: str) -> str | None:
    extra: dict[str, Any] = model.model_extra or {}
    value = extra.get(key)
    return None if value is None else str(value)


def _request(
    relation: ops.Relation, version: str, model: interfaces.RequirerCommonModel, secrets: bool
) -> ClientRequest:
    return ClientRequest(
        relation_id=relation.id,
        app=relation.app.name,
        version=version,
        request_id=model.request_id,
        salt=model.salt,
        database=model.resource,
        extra_user_roles=model.extra_user_roles,
        extensions=_extra(model, "extensions"),
        wants_secrets=secrets,
    )


def _read_relation(model: ops.Model, relation: ops.Relation) -> list[ClientRequest]:
    repository = interfaces.OpsRelationRepository(model, relation, component=relation.app)
    data = repository.get_data() or {}
    if not data:
        return []
    if data.get("version", "v0") == "v0":
        v0 = interfaces.build_model(repository, interfaces.RequirerDataContractV0)
        if not v0.resource:
            return []  # nothing requested yet (e.g. only requested-secrets)
        wants = bool(data.get("requested-secrets"))
        return [_request(relation, "v0", v0, wants)]
    v1 = interfaces.build_model(
        repository, interfaces.RequirerDataContractV1[interfaces.RequirerCommonModel]
    )
    return [_request(relation, "v1", request, True) for request in v1.requests]


def read_requests(model: ops.Model) -> tuple[list[ClientRequest], list[RelationProblem]]:
    """Every request on every `database` relation, and the relations whose data is unreadable.

    Only the leader may read the requirers' application databags it answers.
    """
    requests: list[ClientRequest] = []
    problems: list[RelationProblem] = []
    for relation in model.relations[RELATION]:
        try:
            requests += _read_relation(model, relation)
        except (pydantic.ValidationError, ValueError, TypeError, json.JSONDecodeError) as e:
            logger.warning("unreadable request on relation %d: %s", relation.id, e)
            problems.append(
                RelationProblem(relation.id, relation.app.name, "the request is malformed")
            )
        except (interfaces.DataInterfacesError, ops.ModelError) as e:
            logger.warning("cannot read the request on relation %d: %s", relation.id, e)
            problems.append(
                RelationProblem(relation.id, relation.app.name, "its secrets cannot be read")
            )
    return requests, problems


def _response(request: ClientRequest, creds: Credentials) -> interfaces.ResourceProviderModel:
    return interfaces.ResourceProviderModel(
        salt=request.salt,
        request_id=request.request_id,
        resource=creds.database,
        username=creds.username,
        password=creds.password,
        endpoints=creds.endpoints,
        read_only_endpoints=creds.read_only_endpoints,
        uris=creds.uris,
        read_only_uris=creds.read_only_uris,
        version=creds.version,
        tls=creds.tls,
        tls_ca=creds.tls_ca or None,
    )


_Interface = interfaces.OpsRelationRepositoryInterface[interfaces.ResourceProviderModel]
_ContractV1 = interfaces.DataContractV1[interfaces.ResourceProviderModel]

_COMPARED = (
    "username",
    "password",
    "endpoints",
    "read_only_endpoints",
    "uris",
    "read_only_uris",
    "version",
    "tls",
    "tls_ca",
    "resource",
)


def _contract(interface: _Interface, relation_id: int) -> _ContractV1:
    return interface.build_model(relation_id, _ContractV1)


def _published(
    interface: _Interface, request: ClientRequest
) -> interfaces.ResourceProviderModel | None:
    if request.version == "v0":
        return interface.build_model(request.relation_id, interfaces.DataContractV0)
    contract = _contract(interface, request.relation_id)
    return next((r for r in contract.requests if r.request_id == request.request_id), None)


def _same(
    current: interfaces.ResourceProviderModel | None, wanted: interfaces.ResourceProviderModel
) -> bool:
    if current is None:
        return False
    return all(getattr(current, f) == getattr(wanted, f) for f in _COMPARED)


def publish(model: ops.Model, request: ClientRequest, creds: Credentials) -> bool:
    """Answer one request (leader only); compare before write. True if anything was written."""
    relation = model.get_relation(RELATION, request.relation_id)
    if relation is None:
        return False
    if request.version == "v0" and not request.wants_secrets:
        return _publish_plain(relation, model.app, creds)
    interface = _Interface(model, RELATION)
    wanted = _response(request, creds)
    if _same(_published(interface, request), wanted):
        return False
    if request.version == "v0":
        wanted.request_id = None
        interface.write_model(relation.id, wanted, context={"version": "v0"})
        return True
    contract = _contract(interface, relation.id)
    for index, existing in enumerate(contract.requests):
        if existing.request_id == request.request_id:
            contract.requests[index].update(wanted)
            break
    else:
        contract.requests.append(wanted)
    interface.write_model(relation.id, contract)
    return True


def _publish_plain(relation: ops.Relation, app: ops.Application, creds: Credentials) -> bool:
    """An old requirer that never asked for secrets reads every field from the databag."""
    fields = {
        "database": creds.database,
        "endpoints": creds.endpoints,
        "read-only-endpoints": creds.read_only_endpoints,
        "version": creds.version,
        "username": creds.username,
        "password": creds.password,
        "uris": creds.uris,
        "read-only-uris": creds.read_only_uris,
        "tls": "True" if creds.tls else "False",
        "tls-ca": creds.tls_ca or "",
    }
    databag = relation.data[app]
    wanted = {k: v for k, v in fields.items() if v or k not in _PLAIN_FIELDS}
    if all(databag.get(k) == v for k, v in wanted.items()):
        return False
    databag.update(wanted)
    return True

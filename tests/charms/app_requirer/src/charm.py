#!/usr/bin/env python3
"""A test application using postgresql-k8s through the `database` relation, as real ones do."""

from __future__ import annotations

import json
import logging
import urllib.parse

import ops
from dpcharmlibs import interfaces

logger = logging.getLogger(__name__)

RELATION = "database"
CONTAINER = "app"
_PSQL_PATHS = "/usr/lib/postgresql/16/bin:/usr/lib/postgresql/15/bin:/usr/bin:/bin"
_SECRET_FIELDS = ["username", "password", "tls", "tls-ca", "uris", "read-only-uris"]


class AppRequirerCharm(ops.CharmBase):
    """Requests a database, then connects only with what it was given."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.container = self.unit.get_container(CONTAINER)
        protocol = str(self.config.get("protocol", "v1"))
        self.database: (
            interfaces.ResourceRequirerEventHandler[interfaces.ResourceProviderModel] | None
        ) = None
        if protocol == "v1":
            request = interfaces.RequirerCommonModel(
                resource=str(self.config["database-name"]),
                extra_user_roles=str(self.config["extra-user-roles"]) or None,
                extensions=str(self.config["extensions"]) or None,
            )
            self.database = interfaces.ResourceRequirerEventHandler(
                self, RELATION, [request], response_model=interfaces.ResourceProviderModel
            )
            framework.observe(self.database.on.resource_created, self._on_ready)
            framework.observe(self.database.on.endpoints_changed, self._on_ready)
        else:
            framework.observe(self.on[RELATION].relation_created, self._on_legacy_created)
        framework.observe(self.on.query_action, self._on_query)
        framework.observe(self.on.credentials_action, self._on_credentials)
        framework.observe(self.on.collect_unit_status, self._on_collect_status)

    def _on_ready(self, event: ops.EventBase) -> None:
        logger.info("database ready: %s", type(event).__name__)

    def _on_legacy_created(self, event: ops.RelationCreatedEvent) -> None:
        if not self.unit.is_leader():
            return
        protocol = str(self.config["protocol"])
        if protocol == "raw":
            raw = json.loads(str(self.config["raw-databag"]))
            event.relation.data[self.app].update({str(k): str(v) for k, v in raw.items()})
            return
        data = {"database": str(self.config["database-name"])}
        if roles := str(self.config["extra-user-roles"]):
            data["extra-user-roles"] = roles
        if extensions := str(self.config["extensions"]):
            data["extensions"] = extensions
        if protocol == "v0":
            data["requested-secrets"] = json.dumps(_SECRET_FIELDS)
        event.relation.data[self.app].update(data)

    # -- what the provider published ---------------------------------------------------------

    def published(self) -> dict[str, str]:
        """The provider's answer, or nothing once it is gone (a relation being removed)."""
        try:
            return self._published()
        except (ops.SecretNotFoundError, ops.ModelError):
            return {}

    def _published(self) -> dict[str, str]:
        relation = self.model.get_relation(RELATION)
        if relation is None or relation.app is None:
            return {}
        if self.database is not None:
            responses = self.database.interface.build_model(relation.id, component=relation.app)
            if not responses.requests:
                return {}
            response = responses.requests[0]
            fields = ["username", "password", "endpoints", "read_only_endpoints", "uris"]
            fields += ["read_only_uris", "version", "resource", "tls", "tls_ca"]
            return {
                f: str(getattr(response, f)) for f in fields if getattr(response, f) is not None
            }
        data = dict(relation.data[relation.app])
        if uri := data.get("secret-user"):
            data |= self.model.get_secret(id=uri).get_content(refresh=True)
        return {k.replace("-", "_"): v for k, v in data.items()}

    def _on_credentials(self, event: ops.ActionEvent) -> None:
        event.set_results({k.replace("_", "-"): v for k, v in self.published().items()})

    def _on_query(self, event: ops.ActionEvent) -> None:
        creds = self.published()
        key = "uris" if event.params["endpoint"] == "primary" else "read_only_uris"
        uri = creds.get(key)
        if not uri:
            event.fail("the database relation has not published credentials yet")
            return
        parsed = urllib.parse.urlsplit(uri)
        host, _, port = parsed.netloc.rpartition("@")[2].partition(":")
        env = {
            "PATH": _PSQL_PATHS,
            "PGHOST": host,
            "PGPORT": port or "5432",
            "PGUSER": urllib.parse.unquote(parsed.username or ""),
            "PGPASSWORD": urllib.parse.unquote(parsed.password or ""),
            "PGDATABASE": str(event.params.get("database") or parsed.path.lstrip("/")),
            "PGCONNECT_TIMEOUT": "5",
        }
        try:
            out, _ = self.container.exec(
                [
                    "psql",
                    "-X",
                    "-q",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    str(event.params["sql"]),
                ],
                environment=env,
                timeout=30,
            ).wait_output()
        except ops.pebble.ExecError as e:
            event.fail(f"psql failed: {str(e.stderr or '').strip()}")
            return
        event.set_results({"output": out.strip()})

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        if self.model.get_relation(RELATION) is None:
            event.add_status(ops.BlockedStatus("relate to postgresql-k8s"))
        elif not self.published().get("password"):
            event.add_status(ops.WaitingStatus("waiting for the database"))
        event.add_status(ops.ActiveStatus())


if __name__ == "__main__":  # pragma: nocover
    ops.main(AppRequirerCharm)

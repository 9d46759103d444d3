"""The `metrics-endpoint` relation (prometheus_scrape, provider side): what Prometheus scrapes and alerts on.

No Python package implements the provider, so this writes the interface's databags as its
specification gives them (canonical/charm-relation-interfaces, interfaces/prometheus_scrape/v0):

- application databag (leader): `scrape_metadata` (JSON: the Juju topology), `scrape_jobs` (JSON
  list of Prometheus scrape configs whose targets are `*:<port>`, `*` standing for every unit's
  address) and `alert_rules` (JSON `{"groups": [...]}`);
- unit databag (every unit): `prometheus_scrape_unit_address` and `prometheus_scrape_unit_name`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from typing import Any

import ops

from relations import alert_rules
from workload import layout

RELATION = "metrics-endpoint"
# charmcraft.yaml's `name`: the topology's charm_name is the charm's, not the application's.
CHARM_NAME = "postgresql-k8s"


@dataclasses.dataclass(frozen=True)
class Topology:
    """Where the metrics come from, in Juju's terms."""

    model: str
    model_uuid: str
    application: str
    unit: str
    charm_name: str = CHARM_NAME

    def metadata(self) -> dict[str, str]:
        """The `scrape_metadata` object."""
        return dataclasses.asdict(self)

    def labels(self) -> dict[str, str]:
        """The labels of every alert rule and the matchers of its expression.

        Without juju_unit: a rule must match every unit's series, not the leader's only.
        """
        return {
            "juju_model": self.model,
            "juju_model_uuid": self.model_uuid,
            "juju_application": self.application,
            "juju_charm": self.charm_name,
        }

    @property
    def identifier(self) -> str:
        """A name for this application that is unique across models."""
        return f"{self.model}_{self.model_uuid}_{self.application}"


@dataclasses.dataclass(frozen=True)
class ScrapeJob:
    """One scrape job: a port every unit serves `/metrics` on."""

    name: str
    port: int

    def render(self) -> dict[str, Any]:
        """The job as Prometheus' scrape_config, with `*` for the units' addresses."""
        return {
            "job_name": self.name,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"*:{self.port}"]}],
        }


# Patroni checks restapi.authentication only on the endpoints that change the cluster (its
# check_access decorator); GET /metrics answers anyone, like the exporter, so neither job
# carries credentials. Plain HTTP: the REST API has no certificate (patroni.yml restapi).
JOBS = (
    ScrapeJob("postgresql-exporter", layout.PORT_METRICS),
    ScrapeJob("patroni", layout.PORT_PATRONI),
)


def topology(model: ops.Model) -> Topology:
    """This unit's topology."""
    return Topology(model.name, model.uuid, model.app.name, model.unit.name)


@functools.cache
def _shipped_rules() -> tuple[dict[str, Any], ...]:
    # The rule files are part of the charm: read once per process.
    return tuple(alert_rules.load())


def app_data(where: Topology, jobs: tuple[ScrapeJob, ...] = JOBS) -> dict[str, str]:
    """The application databag."""
    groups = alert_rules.scoped_groups(list(_shipped_rules()), where.labels(), where.identifier)
    return {
        "scrape_metadata": json.dumps(where.metadata(), sort_keys=True),
        "scrape_jobs": json.dumps([job.render() for job in jobs], sort_keys=True),
        "alert_rules": json.dumps({"groups": groups}, sort_keys=True),
    }


def unit_data(address: str, unit_name: str) -> dict[str, str]:
    """A unit's databag.

    The address is the pod's IP: Prometheus may run in another model (namespace) and an IP
    needs no assumption about the cluster's DNS domain; a recreated pod gets a new IP and the
    hooks that follow publish it.
    """
    return {"prometheus_scrape_unit_address": address, "prometheus_scrape_unit_name": unit_name}


def _write(databag: ops.RelationDataContent, data: Mapping[str, str]) -> None:
    # Compare before write: an unchanged databag triggers no relation-changed on the other side.
    for key, value in data.items():
        if databag.get(key) != value:
            databag[key] = value


def publish_app(model: ops.Model, data: Mapping[str, str]) -> None:
    """Write the application databag of every metrics-endpoint relation (leader only)."""
    for relation in model.relations[RELATION]:
        _write(relation.data[model.app], data)


def publish_unit(model: ops.Model, data: Mapping[str, str]) -> None:
    """Write this unit's databag of every metrics-endpoint relation."""
    for relation in model.relations[RELATION]:
        _write(relation.data[model.unit], data)

#!/usr/bin/env python3
"""A test consumer of prometheus_scrape: what a Prometheus charm would load, as an action result."""

from __future__ import annotations

import json
from typing import Any

import ops

RELATION = "metrics-endpoint"


def scrape_configs(app_data: dict[str, str], units: dict[str, dict[str, str]]) -> list[Any]:
    """One scrape config per published job, `*` replaced by each unit's address.

    Every target carries the Juju topology: the metadata's, and the unit the target is.
    """
    metadata = json.loads(app_data["scrape_metadata"])
    topology = {
        "juju_model": metadata["model"],
        "juju_model_uuid": metadata["model_uuid"],
        "juju_application": metadata["application"],
        "juju_charm": metadata["charm_name"],
    }
    configs = []
    for job in json.loads(app_data["scrape_jobs"]):
        static = []
        for target_list in job.get("static_configs", []):
            for target in target_list["targets"]:
                host, _, port = target.rpartition(":")
                if host != "*":
                    static.append({"targets": [target], "labels": topology})
                    continue
                for bag in units.values():
                    address = bag.get("prometheus_scrape_unit_address")
                    name = bag.get("prometheus_scrape_unit_name")
                    if address and name:
                        labels = {**topology, "juju_unit": name}
                        static.append({"targets": [f"{address}:{port}"], "labels": labels})
        name = f"juju_{metadata['model']}_{metadata['application']}_{job['job_name']}"
        configs.append({**job, "job_name": name, "static_configs": static})
    return configs


class PrometheusConsumerCharm(ops.CharmBase):
    """Answers one action with the Prometheus configuration the relation describes."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        framework.observe(self.on.prometheus_config_action, self._on_config)
        framework.observe(self.on.collect_unit_status, self._on_status)

    def _on_config(self, event: ops.ActionEvent) -> None:
        relation = self.model.get_relation(RELATION)
        if relation is None or relation.app is None:
            event.fail("not related")
            return
        app_data = dict(relation.data[relation.app])
        if "scrape_jobs" not in app_data:
            event.fail("nothing published yet")
            return
        units = {u.name: dict(relation.data[u]) for u in relation.units}
        event.set_results(
            {
                "scrape-configs": json.dumps(scrape_configs(app_data, units)),
                "alert-rules": app_data.get("alert_rules", '{"groups": []}'),
                "units": str(len(units)),
            }
        )

    def _on_status(self, event: ops.CollectStatusEvent) -> None:
        event.add_status(ops.ActiveStatus())


if __name__ == "__main__":  # pragma: nocover
    ops.main(PrometheusConsumerCharm)

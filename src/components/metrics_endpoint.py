"""Observability towards Prometheus: the scrape jobs, this unit's address and the alert rules."""

from __future__ import annotations

from components import Component, Io
from relations import metrics_endpoint
from state import Ready, Snapshot


class MetricsEndpoint(Component):
    """The `metrics-endpoint` relation's databags; nothing in the workload changes."""

    def unit_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """Every unit tells Prometheus where to scrape it."""
        metrics_endpoint.publish_unit(io.model, metrics_endpoint.unit_data(r.pod_ip, s.unit_name))
        return s

    def leader_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """The leader publishes the jobs, the topology and the alert rules."""
        if not io.model.relations[metrics_endpoint.RELATION]:
            return s  # the rules are rendered only for someone who reads them
        topology = metrics_endpoint.topology(io.model)
        metrics_endpoint.publish_app(io.model, metrics_endpoint.app_data(topology))
        return s

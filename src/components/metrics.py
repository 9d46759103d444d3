"""The PostgreSQL exporter: started once the monitoring user it logs in as exists."""

from __future__ import annotations

import goal
from components import Component
from state import Ready, Snapshot
from workload import layout, pebble


class Metrics(Component):
    """The exporter service and the file its password is read from."""

    def contribute(self, s: Snapshot, r: Ready) -> goal.Contribution:
        """The exporter, enabled once the cluster has a primary (the leader made the user)."""
        enabled = s.cluster is not None and s.cluster.leader is not None
        password = r.passwords[layout.SystemUser.MONITORING]
        return goal.Contribution(
            services={layout.SERVICE_METRICS: pebble.exporter_service(enabled)},
            files={pebble.PASSWORD_FILE_MONITORING: goal.File(password)},
        )

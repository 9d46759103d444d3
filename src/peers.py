"""The only code that writes the peer databags; a write returns the snapshot that results.

Nothing later in the hook then reads a stale snapshot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import ops

from state import Snapshot


class PeerWriter:
    """Writes the peer databags: the application's (leader) and this unit's acknowledgements."""

    def __init__(self, relation: ops.Relation | None, app: ops.Application, unit: ops.Unit):
        self._relation = relation
        self._app = app
        self._unit = unit

    def save(self, snapshot: Snapshot, changes: Mapping[str, object]) -> Snapshot:
        """Leader: apply field changes to the application data; the snapshot that results."""
        data = snapshot.peer_data.model_copy(update=dict(changes))
        if self._relation is None or data == snapshot.peer_data:
            return snapshot
        self._relation.save(data, self._app)
        return dataclasses.replace(snapshot, peer_data=data)

    def ack(self, snapshot: Snapshot, key: str, value: str) -> Snapshot:
        """Tell the leader, through this unit's databag, what this unit has applied."""
        mine = snapshot.unit_data.get(snapshot.unit_name, {})
        if self._relation is None or mine.get(key, "") == value:
            return snapshot
        self._relation.data[self._unit][key] = value  # an empty value removes the key
        updated = {k: v for k, v in {**mine, key: value}.items() if v}
        bags = {**snapshot.unit_data, snapshot.unit_name: updated}
        return dataclasses.replace(snapshot, unit_data=bags)

"""The Juju side of the local substrate: a model whose hooks run charms through ops.testing.

`Model` keeps what Juju keeps (applications, units, leaders, relations and their databags,
secrets, config, storage, statuses) and runs each hook as `ops.testing.Context.run()` with a
State built from it, committing the output State back. The substrate supplies what Juju would
get from Kubernetes: pod addresses, Pebble clients for the workload containers (`Model`'s
`pebble_client_factory`) and, through `kube.FakeKube`, the Kubernetes API the charm calls.
"""

from substrate.juju.errors import (
    InvalidActionError,
    InvalidCommandError,
    InvalidConfigError,
    JujuModelError,
    ModelInvariantError,
    NotFoundError,
    QuiescenceError,
)
from substrate.juju.kube import FakeKube, KubeCall
from substrate.juju.model import Model, sequential_addresses
from substrate.juju.records import ActionResult, Dispatch
from substrate.juju.secrets import SecretRecord
from substrate.juju.status import AppStatus, ModelStatus, UnitStatus

__all__ = [
    "ActionResult",
    "AppStatus",
    "Dispatch",
    "FakeKube",
    "InvalidActionError",
    "InvalidCommandError",
    "InvalidConfigError",
    "JujuModelError",
    "KubeCall",
    "Model",
    "ModelInvariantError",
    "ModelStatus",
    "NotFoundError",
    "QuiescenceError",
    "SecretRecord",
    "UnitStatus",
    "sequential_addresses",
]

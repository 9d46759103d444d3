"""Where the model reaches into ops.testing and lightkube while one unit's hook runs.

Patched for the duration of a hook only, under a lock so that two models never interleave:
- `scenario.mocking._MockModelBackend.get_pebble`: the Pebble client of each container. A real
  client from the substrate when it has one; otherwise ops.testing's in-memory client, whose
  filesystem the model keeps across hooks (see podfs).
- `..._MockModelBackend.secret_get` / `secret_remove`: record which secrets the charm read and
  which revisions it removed, which the output State does not show.
- `scenario._runtime.Runtime._get_event_env`: the few hook environment variables ops.testing
  cannot express (no remote unit on an app-level relation-changed, the departing unit's own
  application on relation-departed).
- `scenario._runtime.Runtime._virtual_charm_root` and `scenario._ops_main_mock.Ops.
  _load_charm_meta`: the application's charm directory and metadata, prepared once at deploy
  instead of dumped to YAML and parsed again on every hook (most of a hook's cost for a charm
  with hundreds of options).
- `lightkube.Client` (and `lightkube.core.client.Client`): the charm's Kubernetes client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Generator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import lightkube
import lightkube.core.client
import ops
from scenario import _ops_main_mock, _runtime, mocking

from substrate.juju import podfs
from substrate.juju.secrets import HookSecretActivity

_LOCK = threading.RLock()
_Backend = mocking._MockModelBackend  # pyright: ignore[reportPrivateUsage]
_Runtime = _runtime.Runtime  # pyright: ignore[reportPrivateUsage]
_Ops = _ops_main_mock.Ops  # pyright: ignore[reportPrivateUsage]
for _owner, _name in ((_Backend, "get_pebble"), (_Backend, "secret_get"),
                      (_Backend, "secret_remove"), (_Runtime, "_get_event_env"),
                      (_Runtime, "_virtual_charm_root"), (_Ops, "_load_charm_meta")):  # fmt: skip
    if not callable(getattr(_owner, _name, None)):
        raise ImportError(f"ops.testing changed: {_owner.__name__}.{_name} is gone")


@dataclasses.dataclass
class HookSeams:
    """What one hook of one unit gets instead of ops.testing's and lightkube's defaults."""

    unit_name: str
    pebble_clients: Mapping[str, ops.pebble.Client | None]
    pod_roots: Mapping[str, Path]
    charm_root: Path
    charm_meta: Callable[[], ops.CharmMeta]
    env: Mapping[str, str | None] = dataclasses.field(default_factory=dict[str, str | None])
    kube_client: Callable[..., Any] | None = None
    secrets: HookSecretActivity = dataclasses.field(default_factory=HookSecretActivity)
    pebble_opened: set[str] = dataclasses.field(default_factory=set[str])


def _get_pebble(seams: HookSeams, original: Callable[..., Any]) -> Callable[..., Any]:
    def get_pebble(backend: Any, socket_path: str) -> Any:
        if backend.unit_name != seams.unit_name:
            raise RuntimeError(f"hook of {seams.unit_name} asked Pebble for {backend.unit_name}")
        container = PurePosixPath(
            socket_path
        ).parent.name  # /charm/containers/<name>/pebble.socket
        seams.pebble_opened.add(container)
        client = seams.pebble_clients.get(container)
        if client is not None:
            return client
        root = seams.pod_roots.get(container)
        if root is None:
            return original(backend, socket_path)
        return podfs.preserving(root, lambda: original(backend, socket_path))

    return get_pebble


def _secret_get(seams: HookSeams, original: Callable[..., Any]) -> Callable[..., Any]:
    def secret_get(
        backend: Any, *, id: str | None = None, label: str | None = None, **kw: Any
    ) -> Any:
        content = original(backend, id=id, label=label, **kw)
        seams.secrets.reads.add(backend._get_secret(id, label).id)
        return content

    return secret_get


def _secret_remove(seams: HookSeams, original: Callable[..., Any]) -> Callable[..., Any]:
    def secret_remove(backend: Any, id: str, *, revision: int | None = None) -> Any:
        result = original(backend, id, revision=revision)
        if revision is not None:
            seams.secrets.removed_revisions.append((backend._get_secret(id).id, revision))
        return result

    return secret_remove


def _event_env(seams: HookSeams, original: Callable[..., Any]) -> Callable[..., Any]:
    def get_event_env(runtime: Any, *args: Any, **kwargs: Any) -> dict[str, str]:
        env = dict(original(runtime, *args, **kwargs))
        for key, value in seams.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    return get_event_env


def _charm_root(seams: HookSeams, _original: Callable[..., Any]) -> Callable[..., Any]:
    @contextlib.contextmanager
    def virtual_charm_root(_runtime: Any) -> Generator[Path]:
        yield seams.charm_root

    return virtual_charm_root


def _charm_meta(seams: HookSeams, _original: Callable[..., Any]) -> Callable[..., Any]:
    def load_charm_meta(_ops: Any) -> ops.CharmMeta:
        return seams.charm_meta()

    return load_charm_meta


@contextlib.contextmanager
def active(seams: HookSeams) -> Generator[HookSeams]:
    """Install the seams for one hook; everything is restored on exit, even on error."""
    with _LOCK, contextlib.ExitStack() as stack:
        for owner, name, wrap in (
            (_Backend, "get_pebble", _get_pebble),
            (_Backend, "secret_get", _secret_get),
            (_Backend, "secret_remove", _secret_remove),
            (_Runtime, "_get_event_env", _event_env),
            (_Runtime, "_virtual_charm_root", _charm_root),
            (_Ops, "_load_charm_meta", _charm_meta),
        ):
            original = getattr(owner, name)
            stack.enter_context(mock.patch.object(owner, name, wrap(seams, original)))
        if seams.kube_client is not None:
            stack.enter_context(mock.patch.object(lightkube, "Client", seams.kube_client))
            stack.enter_context(
                mock.patch.object(lightkube.core.client, "Client", seams.kube_client)
            )
        yield seams

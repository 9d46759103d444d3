"""The Pebble-compatible daemon: wires plan, services, checks, files, exec and notices to a socket.

Run as `python -m substrate.pebble.daemon --socket PATH --state-dir DIR [--hold]`, as root,
or embed with `Daemon(...).start()` / `.stop()`. Layers found in `<state-dir>/layers/NNN-label.yaml`
are loaded at start; layers added through the API live in memory, as in Pebble.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from substrate.pebble import (
    api,
    changes,
    checks,
    execs,
    logs,
    notices,
    plan,
    procs,
    server,
    services,
)

logger = logging.getLogger(__name__)

VERSION = "v1.19.0+substrate"
DEFAULT_DIR = "/var/lib/pebble/default"
_LAYER_FILE = re.compile(r"^(\d{3})-([a-z](?:-?[a-z0-9])*)\.yaml$")


class Daemon:
    """One Pebble: start() serves the API on the socket, stop() stops services and the server."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        *,
        hold: bool = True,
        okay_delay: float = 1.0,
        fail_delay: float = 5.0,
        environment: Mapping[str, str] | None = None,
        echo: IO[str] | None = None,
        reap_orphans: bool = False,
        on_check_transition: checks.TransitionHook | None = None,
        env_filter: Callable[[dict[str, str]], dict[str, str]] | None = None,
    ) -> None:
        self.socket_path = str(socket_path)
        self.state_dir = Path(state_dir)
        self.version = VERSION
        self.boot_id = str(uuid.uuid4())
        self.identities: dict[str, Any] = {}
        self.stopping = False
        self._hold = hold
        self._reap_orphans = reap_orphans
        self._lock = threading.RLock()
        self._layers: list[plan.Layer] = []
        self._plan = plan.Plan()
        self._shutdown = threading.Event()
        self._stopped = threading.Event()
        self.exit_code: int | None = None
        env = dict(os.environ if environment is None else environment)
        env.setdefault("PEBBLE", str(self.state_dir))
        env.setdefault("PEBBLE_SOCKET", self.socket_path)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.notices = notices.NoticeStore(self.state_dir / "notices.json")
        self.changes = changes.ChangeStore(on_update=self._change_updated)
        self.logs = logs.LogStore(self.state_dir / "logs", echo)
        self.procs = procs.ProcessTable()
        self.services = services.ServiceManager(
            procs_table=self.procs,
            log_store=self.logs,
            change_store=self.changes,
            get_plan=lambda: self.plan,
            request_shutdown=self.request_shutdown,
            environment=env,
            okay_delay=okay_delay,
            fail_delay=fail_delay,
            env_filter=env_filter,
        )
        self.checks = checks.CheckManager(
            change_store=self.changes,
            procs_table=self.procs,
            get_plan=lambda: self.plan,
            on_failed=self.services.check_failed,
            on_transition=on_check_transition,
            environment=env,
        )
        self.execs = execs.ExecManager(
            self.changes, self.procs, env, self._service_config, env_filter=env_filter
        )
        self._server: server.UnixServer | None = None
        self._threads: list[threading.Thread] = []

    # ---- plan ---------------------------------------------------------------------------

    @property
    def plan(self) -> plan.Plan:
        """The current combined plan."""
        with self._lock:
            return self._plan

    def add_layer(self, label: str, text: str, combine: bool = False) -> None:
        """Add (or, with combine, merge into) a layer; raises LayerError and changes nothing."""
        with self._lock:
            order = max((layer.order for layer in self._layers), default=0) + 1
            new = plan.parse_layer(label, text, order)
            layers = list(self._layers)
            index = next((i for i, layer in enumerate(layers) if layer.label == label), None)
            if index is None:
                layers.append(new)
            elif combine:
                layers[index] = plan.combine_into(layers[index], new)
            else:
                raise plan.LayerError(f'layer "{label}" already exists')
            combined = plan.combine(layers)
            self._layers, self._plan = layers, combined
        self.checks.plan_changed()

    def _load_layer_files(self) -> None:
        directory = self.state_dir / "layers"
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            match = _LAYER_FILE.match(path.name)
            if match:
                layer = plan.parse_layer(match[2], path.read_text(), int(match[1]))
                self._layers.append(layer)
        self._plan = plan.combine(self._layers)

    def _service_config(self, name: str) -> Mapping[str, Any] | None:
        return self.plan.services.get(name)

    def services_action(self, action: str, names: list[str]) -> changes.Change:
        """A services change; replan also starts the enabled checks that are stopped."""
        change = self.services.action(action, names)
        if action == "replan":
            self.checks.replan()
        return change

    def _change_updated(self, change_id: str, kind: str) -> None:
        self.notices.add(None, "change-update", change_id, {"kind": kind})

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Load layer files, serve the API, and autostart services unless holding."""
        self._load_layer_files()
        api_server = server.UnixServer(self.socket_path, api.Api(self))
        self._server = api_server
        self._spawn_thread(lambda: api_server.serve_forever(poll_interval=0.1), "api")
        if self._reap_orphans:
            self._spawn_thread(self._sweep, "reaper")
        self.checks.plan_changed()
        logger.info("Started daemon (socket %s).", self.socket_path)
        if not self._hold and any(
            s.get("startup") == "enabled" for s in self.plan.services.values()
        ):
            change = self.services.action("autostart", [])
            logger.info("Started default services with change %s.", change.id)

    def _spawn_thread(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _sweep(self) -> None:
        while not self._stopped.wait(0.5):
            self.procs.sweep_orphans()

    def request_shutdown(self, code: int = 0) -> None:
        """Ask the daemon to shut down (a service's or check's shutdown action)."""
        if self.exit_code is None:
            self.exit_code = code
        self._shutdown.set()

    def wait_shutdown(self, timeout: float | None = None) -> bool:
        """Block until a shutdown is requested; True if it was."""
        return self._shutdown.wait(timeout)

    def stop(self) -> None:
        """Stop checks and services (in parallel, with their kill-delays) and the server."""
        self.stopping = True
        self.checks.stop_all()
        self.services.stop_all()
        if self._reap_orphans:
            self.procs.end_orphans()
        self._shutdown.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        self._stopped.set()
        self.notices.wake()
        self.logs.close()
        logger.info("Stopped daemon.")


def _default_dir() -> str:
    return os.environ.get("PEBBLE") or DEFAULT_DIR


def main(argv: list[str] | None = None) -> int:
    """Entry point: run until SIGTERM/SIGINT or a shutdown action, then stop everything."""
    parser = argparse.ArgumentParser(prog="pebble-daemon", description=__doc__)
    parser.add_argument("--state-dir", default=_default_dir(), help="Pebble's $PEBBLE directory")
    parser.add_argument(
        "--socket", help="API socket (default: $PEBBLE_SOCKET or <state-dir>/.pebble.socket)"
    )
    parser.add_argument("--hold", action="store_true", help="do not autostart enabled services")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")
    parser.add_argument(
        "--dcs-etcd3",
        metavar="URL",
        help="the local substrate: services and execs whose environment carries "
        "PATRONI_KUBERNETES_* use this etcd as Patroni's DCS instead of Kubernetes",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s [pebble] %(message)s",
        stream=sys.stderr,
    )
    for name in ("daemon", "services", "checks"):  # lifecycle events, as Pebble logs them
        logging.getLogger(f"substrate.pebble.{name}").setLevel(logging.INFO)
    socket_path = (
        args.socket or os.environ.get("PEBBLE_SOCKET") or f"{args.state_dir}/.pebble.socket"
    )
    procs.become_subreaper()
    env_filter = None
    if args.dcs_etcd3:
        # Imported here: the daemon itself needs nothing but the standard library and PyYAML.
        from substrate.k8s import dcs  # noqa: PLC0415

        url = str(args.dcs_etcd3)

        def env_filter(env: dict[str, str]) -> dict[str, str]:
            if any(k.startswith(dcs.KUBERNETES_ENV_PREFIX) for k in env):
                return dcs.translate_dcs_env(env, url)
            return env

    daemon = Daemon(
        socket_path,
        args.state_dir,
        hold=args.hold,
        echo=sys.stdout,
        reap_orphans=True,
        env_filter=env_filter,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    daemon.start()
    while not stop.wait(0.2) and not daemon.wait_shutdown(0):
        pass
    daemon.stop()
    return daemon.exit_code or 0


if __name__ == "__main__":
    sys.exit(main())

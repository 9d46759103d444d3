"""The `pebble` command for workloads: notify, services, checks, logs, plan, notices.

Standard library only (no package imports), so a non-root workload can run it with the system
Python: `python3 -I /path/to/substrate/pebble/cli.py notify example.com/key a=b`. The socket is
$PEBBLE_SOCKET, else $PEBBLE/.pebble.socket, else /var/lib/pebble/default/.pebble.socket.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import urllib.parse
from typing import Any

DEFAULT_SOCKET = "/var/lib/pebble/default/.pebble.socket"


class CliError(Exception):
    """Raised with the message to print when a request fails."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def socket_path() -> str:
    """Where the daemon listens, from the environment."""
    if os.environ.get("PEBBLE_SOCKET"):
        return os.environ["PEBBLE_SOCKET"]
    if os.environ.get("PEBBLE"):
        return os.path.join(os.environ["PEBBLE"], ".pebble.socket")
    return DEFAULT_SOCKET


def _open(
    method: str,
    path: str,
    query: dict[str, Any] | None = None,
    body: Any = None,
    timeout: float = 30.0,
) -> http.client.HTTPResponse:
    url = path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
    connection = _UnixConnection(socket_path(), timeout)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    try:
        connection.request(method, url, body=payload, headers=headers)
        return connection.getresponse()
    except OSError as e:
        raise CliError(f"cannot connect to Pebble at {socket_path()}: {e}") from e


def request(method: str, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
    """Make a JSON request; returns the envelope's result or raises CliError."""
    response = _open(method, path, query, body)
    try:
        envelope = json.loads(response.read() or b"{}")
    except ValueError as e:
        raise CliError(f"invalid response from Pebble: {e}") from e
    if envelope.get("type") == "error":
        raise CliError(envelope.get("result", {}).get("message", "unknown error"))
    return envelope.get("result")


def cmd_notify(args: argparse.Namespace) -> int:
    """Pebble notify [--repeat-after=DUR] KEY [NAME=VALUE...]."""
    data: dict[str, str] = {}
    for item in args.data:
        name, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"data args must be in NAME=VALUE format, not {item!r}")
        data[name] = value
    body: dict[str, Any] = {"action": "add", "type": "custom", "key": args.key, "data": data}
    if args.repeat_after:
        body["repeat-after"] = args.repeat_after
    result = request("POST", "/v1/notices", body=body)
    print(f"Recorded notice {result['id']}")
    return 0


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def cmd_services(args: argparse.Namespace) -> int:
    """Pebble services [NAME...]."""
    query = {"names": ",".join(args.names)} if args.names else None
    services = request("GET", "/v1/services", query)
    if not services:
        print("Plan has no services.", file=sys.stderr)
        return 0
    rows = [["Service", "Startup", "Current", "Since"]]
    rows += [
        [s["name"], s["startup"], s["current"], s.get("current-since", "-")] for s in services
    ]
    _table(rows)
    return 0


def cmd_checks(args: argparse.Namespace) -> int:
    """Pebble checks [--level=LEVEL] [NAME...]."""
    query: dict[str, Any] = {"names": args.names} if args.names else {}
    if args.level:
        query["level"] = args.level
    found = request("GET", "/v1/checks", query)
    if not found:
        print("Plan has no health checks.", file=sys.stderr)
        return 0
    rows = [["Check", "Level", "Status", "Failures"]]
    rows += [
        [c["name"], c.get("level", "-"), c["status"], f"{c['failures']}/{c['threshold']}"]
        for c in found
    ]
    _table(rows)
    return 0


def cmd_plan(_args: argparse.Namespace) -> int:
    """Pebble plan."""
    print(request("GET", "/v1/plan", {"format": "yaml"}), end="")
    return 0


def cmd_notices(args: argparse.Namespace) -> int:
    """Pebble notices [--type=TYPE] [--key=KEY]."""
    query: dict[str, Any] = {"users": "all"} if os.geteuid() == 0 else {}
    if args.type:
        query["types"] = args.type
    if args.key:
        query["keys"] = args.key
    for notice in request("GET", "/v1/notices", query):
        data = " ".join(f"{k}={v}" for k, v in (notice.get("last-data") or {}).items())
        print(
            f"{notice['id']}\t{notice['type']}\t{notice['key']}\t{notice['occurrences']}\t{data}"
        )
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Pebble logs [-n N] [-f] [SERVICE...]."""
    query: dict[str, Any] = {"n": args.n}
    if args.services:
        query["services"] = args.services
    if args.follow:
        query["follow"] = "true"
    response = _open("GET", "/v1/logs", query, timeout=3600.0 if args.follow else 30.0)
    for raw in response:
        entry = json.loads(raw)
        print(f"{entry['time']} [{entry['service']}] {entry['message']}", flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pebble", description="Talk to the Pebble daemon.")
    sub = parser.add_subparsers(dest="command", required=True)
    notify = sub.add_parser("notify", help="record a custom notice")
    notify.add_argument("--repeat-after", help="do not repeat the notice within this duration")
    notify.add_argument("key")
    notify.add_argument("data", nargs="*", metavar="NAME=VALUE")
    notify.set_defaults(run=cmd_notify)
    services = sub.add_parser("services", help="show service status")
    services.add_argument("names", nargs="*")
    services.set_defaults(run=cmd_services)
    checks = sub.add_parser("checks", help="show health check status")
    checks.add_argument("--level", choices=["alive", "ready"])
    checks.add_argument("names", nargs="*")
    checks.set_defaults(run=cmd_checks)
    sub.add_parser("plan", help="show the plan").set_defaults(run=cmd_plan)
    notices = sub.add_parser("notices", help="list notices")
    notices.add_argument("--type", action="append")
    notices.add_argument("--key", action="append")
    notices.set_defaults(run=cmd_notices)
    logs = sub.add_parser("logs", help="show service logs")
    logs.add_argument("-n", type=int, default=30, help="number of lines (-1 for all)")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("services", nargs="*")
    logs.set_defaults(run=cmd_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; prints "error: ..." and returns 1 on failure, like Pebble's CLI."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The substrate's Pebble daemon, driven only through ops' own Pebble client, acting on real processes.

Each test runs `python -m substrate.pebble.daemon` as root in a temporary directory and asserts on
what really happened: PIDs and their credentials in /proc, files on disk, signals received.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import ops
import pytest
from ops import pebble

from substrate.pebble import daemon as daemon_module

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user, unlike a venv under /root

# One helper program for every test service. Modes:
#   sleep     write <name>.pid, then sleep      stubborn  same, ignoring SIGTERM
#   hup       same, appending to <name>.hup on SIGHUP, with a child in its process group
#             (pid in <name>.child) that a SIGHUP would kill
#   crash     append a timestamp to <name>.start, say so, and exit $EXIT_CODE (default 1)
#   exit      append to <name>.start, run $AFTER seconds, exit $EXIT_CODE
#   serve     write <name>.pid, serve <dir>/www over HTTP on port $PORT
SERVICE_PROGRAM = r"""
import http.server, os, signal, sys, time
mode, d, name = sys.argv[1:4]
def mark(what):
    with open(f"{d}/{name}.{what}", "a") as f:
        f.write(f"{time.time()}\n")
if mode == "crash":
    mark("start")
    print(f"{name} is crashing", flush=True)
    sys.exit(int(os.environ.get("EXIT_CODE", "1")))
if mode == "exit":
    mark("start")
    time.sleep(float(os.environ["AFTER"]))
    sys.exit(int(os.environ.get("EXIT_CODE", "0")))
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "hup":
    signal.signal(signal.SIGHUP, lambda *_: mark("hup"))
    import subprocess
    child = subprocess.Popen(["sleep", "3600"])
    with open(f"{d}/{name}.child", "w") as f:
        f.write(str(child.pid))
with open(f"{d}/{name}.pid.tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(f"{d}/{name}.pid.tmp", f"{d}/{name}.pid")
mark("start")
print(f"{name} started as {os.getuid()}", flush=True)
if mode == "serve":
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=f"{d}/www", **k)
    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), handler).serve_forever()
while True:
    time.sleep(3600)
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    socket: str
    client: pebble.Client
    workdir: Path

    def service(self, mode: str, name: str, **fields: Any) -> dict[str, Any]:
        """A layer service running the helper program."""
        command = f"{SYSTEM_PYTHON} {self.workdir}/svc.py {mode} {self.workdir} {name}"
        return {"override": "replace", "command": command, **fields}

    def pid(self, name: str) -> int:
        return int((self.workdir / f"{name}.pid").read_text())

    def wait_pid(self, name: str, not_: int | None = None) -> int:
        def current() -> int | None:
            try:
                pid = self.pid(name)
            except (FileNotFoundError, ValueError):
                return None
            return pid if pid != not_ and alive(pid) else None

        return wait_for(current)

    def starts(self, name: str) -> list[float]:
        path = self.workdir / f"{name}.start"
        return [float(line) for line in path.read_text().split()] if path.exists() else []

    def current(self, name: str) -> str:
        (info,) = self.client.get_services([name])
        return (
            info.current.value if isinstance(info.current, pebble.ServiceStatus) else info.current
        )

    def cli(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the `pebble` CLI as the substrate's shim would."""
        env = {"PATH": "/usr/bin:/bin", "PEBBLE_SOCKET": self.socket}
        if user is None:
            argv = [sys.executable, "-m", "substrate.pebble.cli", *args]
            env["PYTHONPATH"] = str(REPO)
        else:  # a workload user, with the system Python and a copy of the standalone script
            argv = [SYSTEM_PYTHON, "-I", str(self.workdir / "cli.py"), *args]
        return subprocess.run(
            argv, env=env, user=user, capture_output=True, text=True, timeout=30, check=False
        )


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory every user can write to (tmp_path's parents are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="pebble-test-"))
    path.chmod(0o777)
    (path / "svc.py").write_text(SERVICE_PROGRAM)
    shutil.copy(REPO / "substrate" / "pebble" / "cli.py", path / "cli.py")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def run_daemon(tmp_path: Path, workdir: Path, *options: str) -> Generator[Daemon, None, None]:
    """`python -m substrate.pebble.daemon --hold [options]`, stopped on exit."""
    if os.geteuid() != 0:
        pytest.fail(
            "the Pebble daemon tests run services as other users: run them as root", pytrace=False
        )
    sock = str(workdir / "pebble.sock")  # where workload users can reach it
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [
        sys.executable,
        "-m",
        "substrate.pebble.daemon",
        "--socket",
        sock,
        "--state-dir",
        str(tmp_path / "state"),
        "--hold",
        *options,
    ]
    with (tmp_path / "daemon.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = pebble.Client(socket_path=sock)
        wait_for(lambda: os.path.exists(sock) and client.get_system_info())
        yield Daemon(proc, sock, client, workdir)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.fixture
def daemon(tmp_path: Path, workdir: Path) -> Iterator[Daemon]:
    with run_daemon(tmp_path, workdir) as running:
        yield running


def test_layers_merge_replace_and_combine(daemon: Daemon) -> None:
    client = daemon.client
    client.add_layer("base", {
        "summary": "base",
        "services": {
            "srv": {"override": "replace", "command": "/bin/sleep 10", "startup": "enabled",
                    "environment": {"A": "1", "B": "1"}, "after": ["db"]},
            "db": {"override": "replace", "command": "/bin/sleep 20"},
        },
        "checks": {"chk": {"override": "replace", "period": "10s", "http": {"url": "http://localhost:1/", "headers": {"X": "1"}}}},
    })  # fmt: skip
    client.add_layer("extra", {
        "services": {
            "srv": {"override": "merge", "environment": {"B": "2", "C": "3"}, "after": ["other"], "kill-delay": "60s"},
            "db": {"override": "replace", "command": "/bin/sleep 30"},
            "other": {"override": "replace", "command": "/bin/true"},
        },
        "checks": {"chk": {"override": "merge", "threshold": 5, "http": {"headers": {"Y": "2"}}}},
    })  # fmt: skip

    plan = client.get_plan()
    srv = plan.services["srv"]
    assert srv.command == "/bin/sleep 10"
    assert srv.startup == "enabled"
    assert srv.environment == {"A": "1", "B": "2", "C": "3"}
    assert srv.after == ["db", "other"]
    assert srv.kill_delay == "1m0s"  # durations come back as Go prints them
    assert plan.services["db"].to_dict() == {"override": "replace", "command": "/bin/sleep 30"}
    chk = plan.checks["chk"]
    assert chk.http == {"url": "http://localhost:1/", "headers": {"X": "1", "Y": "2"}}
    assert (chk.threshold, chk.period) == (5, "10s")

    # combine=True replaces "srv" inside the lower "base" layer; "extra" still merges on top.
    client.add_layer(
        "base",
        {"services": {"srv": {"override": "replace", "command": "/bin/sleep 99"}}},
        combine=True,
    )
    srv = client.get_plan().services["srv"]
    assert srv.command == "/bin/sleep 99"
    assert srv.environment == {"B": "2", "C": "3"}
    assert srv.after == ["other"]
    assert srv.startup == ""

    with pytest.raises(pebble.APIError) as exists:
        client.add_layer(
            "extra", {"services": {"x": {"override": "replace", "command": "/bin/true"}}}
        )
    assert exists.value.code == 400 and "already exists" in exists.value.message
    with pytest.raises(pebble.APIError, match='must define "override"'):
        client.add_layer("bad", {"services": {"x": {"command": "/bin/true"}}})
    with pytest.raises(pebble.APIError, match='must define "command"'):
        client.add_layer("bad", {"services": {"y": {"override": "merge", "startup": "enabled"}}})
    assert "bad" not in client.get_plan().to_yaml() and "y" not in client.get_plan().services


def test_replan_starts_enabled_services_as_their_user(daemon: Daemon) -> None:
    user = "postgres" if _user_exists("postgres") else "nobody"
    entry = pwd.getpwnam(user)
    daemon.client.add_layer("l", {"services": {
        "worker": daemon.service("sleep", "worker", startup="enabled", user=user, environment={"MARK": "worker-env"}),
        "idle": daemon.service("sleep", "idle", startup="disabled"),
    }})  # fmt: skip
    daemon.client.replan_services()

    pid = daemon.wait_pid("worker")
    status = proc_status(pid)
    assert status["Uid"].split() == [str(entry.pw_uid)] * 4
    assert status["Gid"].split() == [str(entry.pw_gid)] * 4
    assert sorted(int(g) for g in status["Groups"].split()) == sorted(
        set(os.getgrouplist(user, entry.pw_gid))
    )
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"MARK=worker-env" in environ and f"HOME={entry.pw_dir}".encode() in environ
    assert os.getpgid(pid) == pid  # its own process group
    assert daemon.current("worker") == "active"
    assert daemon.current("idle") == "inactive"
    assert not (daemon.workdir / "idle.pid").exists()


def test_replan_restarts_only_changed_services(daemon: Daemon) -> None:
    client = daemon.client
    client.add_layer("l", {"services": {
        "a": daemon.service("sleep", "a", startup="enabled", **{"kill-delay": "1s"}),
        "b": daemon.service("sleep", "b", startup="enabled"),
    }})  # fmt: skip
    client.replan_services()
    a1, b1 = daemon.wait_pid("a"), daemon.wait_pid("b")

    client.replan_services()  # nothing changed: nothing restarts
    assert (daemon.pid("a"), daemon.pid("b")) == (a1, b1)

    client.add_layer(
        "l", {"services": {"a": {"override": "merge", "environment": {"X": "1"}}}}, combine=True
    )
    client.replan_services()
    a2 = daemon.wait_pid("a", not_=a1)
    assert not alive(a1)
    assert daemon.pid("b") == b1 and alive(b1)
    assert b"X=1" in Path(f"/proc/{a2}/environ").read_bytes().split(b"\0")


def test_stop_sends_sigterm_then_sigkill_after_kill_delay(daemon: Daemon) -> None:
    client = daemon.client
    client.add_layer("l", {"services": {
        "stubborn": daemon.service("stubborn", "stubborn", **{"kill-delay": "1s"}),
        "gentle": daemon.service("sleep", "gentle", **{"kill-delay": "10s"}),
    }})  # fmt: skip
    client.start_services(["stubborn", "gentle"])
    stubborn, gentle = daemon.wait_pid("stubborn"), daemon.wait_pid("gentle")

    started = time.monotonic()
    client.stop_services(["gentle"])
    assert time.monotonic() - started < 3  # SIGTERM was enough (its kill-delay is 10 s)
    assert not alive(gentle)

    started = time.monotonic()
    client.stop_services(["stubborn"])
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.5, elapsed  # waited the kill-delay, then SIGKILL
    assert not alive(stubborn)
    assert daemon.current("stubborn") == "inactive"


def test_crashing_service_restarts_with_growing_backoff(daemon: Daemon) -> None:
    client = daemon.client
    service = daemon.service(
        "crash", "crash", startup="enabled", **{"backoff-delay": "100ms", "backoff-limit": "2s"}
    )
    client.add_layer("l", {"services": {"crash": service}})
    with pytest.raises(pebble.ChangeError) as failed:
        client.replan_services()
    assert (
        'Start service "crash" (cannot start service: exited quickly with code 1)'
        in failed.value.err
    )
    assert "Most recent service output:\n    crash is crashing" in str(failed.value)  # task log

    wait_for(lambda: daemon.current("crash") == "backoff", timeout=2)
    wait_for(lambda: len(daemon.starts("crash")) >= 5, timeout=5)
    starts = daemon.starts("crash")
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # Delays of 0.1 s, 0.2 s, 0.4 s, 0.8 s; each gap also holds the helper's own run time,
    # about the same every round, so compare each gap with the first one.
    assert 0.08 < gaps[0] < 0.5, gaps
    for i, gap in enumerate(gaps[:4]):
        assert abs((gap - gaps[0]) - (0.1 * 2**i - 0.1)) < 0.15, gaps

    client.stop_services(["crash"])
    assert daemon.current("crash") == "inactive"
    count = len(daemon.starts("crash"))
    time.sleep(1.0)
    assert len(daemon.starts("crash")) == count  # a stop cancels the pending restart


def test_on_failure_ignore_leaves_the_service_stopped(daemon: Daemon) -> None:
    service = daemon.service(
        "exit",
        "once",
        **{"on-failure": "ignore", "environment": {"AFTER": "1.3", "EXIT_CODE": "2"}},
    )
    daemon.client.add_layer("l", {"services": {"once": service}})
    daemon.client.start_services(["once"])  # it survives the 1 s start window
    assert daemon.current("once") == "active"
    wait_for(lambda: daemon.current("once") == "inactive", timeout=3)
    time.sleep(0.8)
    assert len(daemon.starts("once")) == 1


def test_on_failure_shutdown_stops_the_daemon(daemon: Daemon) -> None:
    daemon.client.add_layer("l", {"services": {
        "fatal": daemon.service("exit", "fatal", **{"on-failure": "shutdown", "environment": {"AFTER": "1.2", "EXIT_CODE": "3"}}),
        "bystander": daemon.service("sleep", "bystander"),
    }})  # fmt: skip
    daemon.client.start_services(["fatal", "bystander"])
    bystander = daemon.wait_pid("bystander")
    assert daemon.proc.wait(timeout=10) == 10  # Pebble's exit code for a failure shutdown
    assert not alive(bystander)
    assert not os.path.exists(daemon.socket)


def test_checks_go_down_after_threshold_and_recover(daemon: Daemon) -> None:
    client = daemon.client
    healthy = daemon.workdir / "healthy"
    healthy.touch()
    client.add_layer("l", {"checks": {"present": {
        "override": "replace", "level": "alive", "period": "200ms", "timeout": "1s", "threshold": 2,
        "exec": {"command": f"test -f {healthy}"},
    }}})  # fmt: skip

    def check() -> pebble.CheckInfo:
        (info,) = client.get_checks(names=["present"])
        return info

    up = wait_for(lambda: (info := check()).successes and info)
    assert (up.status, up.failures, up.threshold, up.level) == (
        pebble.CheckStatus.UP,
        0,
        2,
        pebble.CheckLevel.ALIVE,
    )
    perform = client.get_change(up.change_id)
    assert (perform.kind, perform.ready) == ("perform-check", False)

    healthy.unlink()
    down = wait_for(
        lambda: (info := check()).status == pebble.CheckStatus.DOWN and info, timeout=3
    )
    assert down.failures >= 2
    failed = client.get_change(perform.id)
    assert failed.status == "Error" and "exit status 1" in (failed.err or "")
    recover = client.get_change(down.change_id)
    assert (recover.kind, recover.ready) == ("recover-check", False)
    assert recover.tasks[0].data == {"check-name": "present"}
    assert client.get_checks(level=pebble.CheckLevel.READY) == []  # no ready-level checks here

    healthy.touch()
    back = wait_for(lambda: (info := check()).status == pebble.CheckStatus.UP and info, timeout=3)
    assert back.failures == 0 and back.successes >= 1
    assert client.get_change(recover.id).status == "Done"
    assert client.get_change(back.change_id).kind == "perform-check"
    # The change-update notices Juju turns into pebble-check-failed / -recovered events.
    updates = client.get_notices(
        types=[pebble.NoticeType.CHANGE_UPDATE], keys=[failed.id, recover.id]
    )
    assert {n.key for n in updates} == {failed.id, recover.id}

    assert client.stop_checks(["present"]) == ["present"]
    assert check().status == pebble.CheckStatus.INACTIVE


def test_on_check_failure_restart_restarts_the_service(daemon: Daemon) -> None:
    client = daemon.client
    port = free_port()
    (daemon.workdir / "www").mkdir()
    ok = daemon.workdir / "www" / "ok"
    ok.write_text("ok")
    web = daemon.service("serve", "web", startup="enabled", environment={"PORT": str(port)},
                         **{"on-check-failure": {"web-up": "restart"}, "backoff-delay": "100ms", "kill-delay": "1s"})  # fmt: skip
    check = {"override": "replace", "period": "200ms", "timeout": "1s", "threshold": 2,
             "http": {"url": f"http://127.0.0.1:{port}/ok"}}  # fmt: skip
    client.add_layer("l", {"services": {"web": web}, "checks": {"web-up": check}})
    client.replan_services()
    first = daemon.wait_pid("web")
    wait_for(lambda: client.get_checks()[0].successes)

    ok.unlink()  # the server now answers 404: the check fails and the service is restarted
    second = daemon.wait_pid("web", not_=first)
    assert not alive(first)
    assert client.get_checks()[0].status == pebble.CheckStatus.DOWN
    wait_for(lambda: daemon.current("web") == "active")

    ok.write_text("ok")
    wait_for(lambda: client.get_checks()[0].status == pebble.CheckStatus.UP, timeout=3)
    assert daemon.pid("web") == second and alive(second)  # recovery restarts nothing


def test_files_push_pull_list_make_dir_remove(daemon: Daemon, workdir: Path) -> None:
    client = daemon.client
    user = pwd.getpwnam("nobody")
    root = workdir / "files"

    client.push(
        f"{root}/a/b/conf.yaml", "key: value\n", make_dirs=True, permissions=0o600, user="nobody"
    )
    st = os.stat(root / "a" / "b" / "conf.yaml")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, user.pw_uid, user.pw_gid)
    parent = os.stat(root / "a" / "b")
    assert (parent.st_mode & 0o7777, parent.st_uid) == (0o755, user.pw_uid)
    with client.pull(f"{root}/a/b/conf.yaml") as f:
        assert f.read() == "key: value\n"

    blob = os.urandom(3 * 1024 * 1024 + 7)  # crosses chunk and multipart-boundary buffers
    client.push(f"{root}/blob.bin", blob)
    assert (root / "blob.bin").read_bytes() == blob
    assert (
        os.stat(root / "blob.bin").st_mode & 0o777 == 0o644
        and os.stat(root / "blob.bin").st_uid == 0
    )
    with client.pull(f"{root}/blob.bin", encoding=None) as f:
        assert f.read() == blob

    client.make_dir(
        f"{root}/x/y/z", make_parents=True, permissions=0o750, user_id=user.pw_uid, group="root"
    )
    for path in (root / "x", root / "x" / "y", root / "x" / "y" / "z"):
        st = os.stat(path)
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, user.pw_uid, 0)

    listing = {info.name: info for info in client.list_files(str(root))}
    assert set(listing) == {"a", "blob.bin", "x"}
    assert listing["blob.bin"].type == pebble.FileType.FILE and listing["blob.bin"].size == len(
        blob
    )
    assert listing["a"].type == pebble.FileType.DIRECTORY and listing["a"].user == "nobody"
    assert [i.name for i in client.list_files(str(root), pattern="*.bin")] == ["blob.bin"]
    (itself,) = client.list_files(f"{root}/x", itself=True)
    assert (itself.path, itself.permissions, itself.group) == (f"{root}/x", 0o750, "root")

    with pytest.raises(pebble.PathError) as missing:
        client.pull(f"{root}/nope")
    assert missing.value.kind == "not-found"
    with pytest.raises(pebble.PathError) as no_parent:
        client.push(f"{root}/no/such/dir/file", "x")
    assert no_parent.value.kind == "not-found"
    with pytest.raises(pebble.PathError) as exists:
        client.make_dir(f"{root}/x")
    assert exists.value.kind == "generic-file-error"
    with pytest.raises(pebble.APIError) as not_listed:
        client.list_files(f"{root}/nope")
    assert not_listed.value.code == 404 and not_listed.value.body["result"]["kind"] == "not-found"

    with pytest.raises(pebble.PathError, match="directory not empty"):
        client.remove_path(f"{root}/x")
    client.remove_path(f"{root}/x", recursive=True)
    client.remove_path(f"{root}/blob.bin")
    client.remove_path(f"{root}/never-existed", recursive=True)  # rm -rf: no error
    assert sorted(os.listdir(root)) == ["a"]
    with pytest.raises(pebble.PathError) as gone:
        client.remove_path(f"{root}/blob.bin")
    assert gone.value.kind == "not-found"


def test_send_signal_reaches_the_service(daemon: Daemon) -> None:
    client = daemon.client
    client.add_layer(
        "l",
        {"services": {"hup": daemon.service("hup", "hup"), "off": daemon.service("sleep", "off")}},
    )
    client.start_services(["hup"])
    daemon.wait_pid("hup")
    child = int((daemon.workdir / "hup.child").read_text())
    client.send_signal("SIGHUP", ["hup"])
    wait_for((daemon.workdir / "hup.hup").exists, timeout=3)
    assert daemon.current("hup") == "active"
    # Like Pebble, only the service's own process: a helper it started (Patroni's postmaster
    # launcher, a pg_basebackup) shares its process group and would die of the SIGHUP.
    time.sleep(0.2)
    assert Path(f"/proc/{child}/status").read_text().split("State:")[1].split()[0] != "Z"

    with pytest.raises(pebble.APIError, match="not running"):
        client.send_signal(signal.SIGHUP, ["off"])
    with pytest.raises(pebble.APIError, match="does not exist"):
        client.send_signal("SIGHUP", ["ghost"])


def test_notify_cli_records_custom_notices(daemon: Daemon) -> None:
    client = daemon.client
    key = "postgresql.canonical.com/role-change"
    first = daemon.cli("notify", key, "role=primary", "action=on_role_change")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Recorded notice ")
    (notice,) = client.get_notices(types=[pebble.NoticeType.CUSTOM], keys=[key])
    assert (notice.occurrences, notice.last_data) == (
        1,
        {"role": "primary", "action": "on_role_change"},
    )
    assert notice.user_id == 0

    assert daemon.cli("notify", key, "role=replica").returncode == 0
    (notice,) = client.get_notices(types=[pebble.NoticeType.CUSTOM], keys=[key])
    assert (notice.occurrences, notice.last_data) == (2, {"role": "replica"})

    # A workload user (Patroni's callback) gets its own notice; an admin sees it with users=all.
    nobody = pwd.getpwnam("nobody").pw_uid
    as_nobody = daemon.cli("notify", key, "role=standby", user="nobody")
    assert as_nobody.returncode == 0, as_nobody.stderr
    everyone = client.get_notices(
        users=pebble.NoticesUsers.ALL, types=[pebble.NoticeType.CUSTOM], keys=[key]
    )
    assert {(n.user_id, n.last_data["role"]) for n in everyone} == {
        (0, "replica"),
        (nobody, "standby"),
    }

    bad = daemon.cli("notify", "not-a-domain-key")
    assert bad.returncode == 1 and "invalid key" in bad.stderr


def test_exec_output_errors_user_and_timeout(daemon: Daemon, workdir: Path) -> None:
    client = daemon.client
    out, err = client.exec(["sh", "-c", "echo out; echo err >&2"]).wait_output()
    assert (out, err) == ("out\n", "err\n")

    with pytest.raises(pebble.ExecError) as failed:
        client.exec(["sh", "-c", "echo partial; echo broken >&2; exit 3"]).wait_output()
    assert (failed.value.exit_code, failed.value.stdout, failed.value.stderr) == (
        3,
        "partial\n",
        "broken\n",
    )

    out, _ = client.exec(["sh", "-c", "id -u; id -g; pwd; echo $FOO"], user="nobody", working_dir=str(workdir),
                         environment={"FOO": "bar"}).wait_output()  # fmt: skip
    nobody = pwd.getpwnam("nobody")
    assert out.split() == [str(nobody.pw_uid), str(nobody.pw_gid), str(workdir), "bar"]

    out, err = client.exec(["cat"], stdin="piped in").wait_output()
    assert (out, err) == ("piped in", "")
    out, err = client.exec(["sh", "-c", "echo a; echo b >&2"], combine_stderr=True).wait_output()
    assert sorted(out.split()) == ["a", "b"] and err is None

    started = time.monotonic()
    with pytest.raises(pebble.ChangeError, match="timed out"):
        client.exec(["sleep", "30"], timeout=0.5).wait_output()
    assert time.monotonic() - started < 3
    with pytest.raises(pebble.APIError, match="cannot find executable"):
        client.exec(["no-such-command-here"])


def test_dcs_etcd3_translates_services_and_execs_alike(tmp_path: Path, workdir: Path) -> None:
    """With --dcs-etcd3, whatever starts with PATRONI_KUBERNETES_* is pointed at etcd3 instead.

    A service (Patroni) and an exec (`patronictl` run with the layer's environment, or in the
    service's context) go through the same translation; an exec without those variables is
    left alone.
    """
    env = {
        "PATRONI_KUBERNETES_NAMESPACE": "prod",
        "PATRONI_KUBERNETES_POD_IP": "10.1.2.3",
        "PATRONI_SCOPE": "pg",
    }
    show = "env | grep ^PATRONI_ | sort"
    out_file = workdir / "service.env"
    service: pebble.ServiceDict = {
        "override": "replace",
        "command": f"sh -c '{show} > {out_file}.tmp; mv {out_file}.tmp {out_file}; exec sleep 60'",
        "environment": env,
    }
    with run_daemon(tmp_path, workdir, "--dcs-etcd3", "http://10.9.8.7:2379") as daemon:
        daemon.client.add_layer("l", {"services": {"patroni": service}})
        daemon.client.start_services(["patroni"])
        from_service = wait_for(out_file.exists) and out_file.read_text()
        from_exec, _ = daemon.client.exec(["sh", "-c", show], environment=env).wait_output()
        in_context, _ = daemon.client.exec(
            ["sh", "-c", show], service_context="patroni"
        ).wait_output()
        plain, _ = daemon.client.exec(
            ["sh", "-c", show], environment={"PATRONI_SCOPE": "pg"}
        ).wait_output()

    etcd3 = ["PATRONI_ETCD3_HOSTS=10.9.8.7:2379", "PATRONI_SCOPE=pg"]
    assert from_service.split() == etcd3
    assert from_exec.split() == etcd3
    assert in_context.split() == etcd3
    assert plain.split() == ["PATRONI_SCOPE=pg"]


def test_services_and_logs_through_the_cli(daemon: Daemon) -> None:
    daemon.client.add_layer(
        "l", {"services": {"chatty": daemon.service("sleep", "chatty", startup="enabled")}}
    )
    daemon.client.replan_services()
    services = daemon.cli("services")
    assert services.returncode == 0
    assert services.stdout.split("\n")[1].split()[:3] == ["chatty", "enabled", "active"]
    logs = wait_for(
        lambda: (
            "[chatty] chatty started as 0" in (out := daemon.cli("logs", "chatty").stdout) and out
        )
    )
    assert logs.count("\n") == 1


def test_requires_and_after_order_starts_and_stops(daemon: Daemon) -> None:
    client = daemon.client
    client.add_layer("l", {"services": {
        "db": daemon.service("sleep", "db"),
        "app": daemon.service("sleep", "app", requires=["db"], after=["db"]),
    }})  # fmt: skip
    client.start_services(["app"])  # pulls in db, and starts it first
    assert daemon.current("db") == daemon.current("app") == "active"
    assert daemon.starts("db")[0] + 0.9 < daemon.starts("app")[0]  # app waited for db's start

    app, db = daemon.pid("app"), daemon.pid("db")
    client.restart_services(["db"])  # restarts just the service named
    assert daemon.wait_pid("db", not_=db) and daemon.pid("app") == app and alive(app)
    client.stop_services(["db"])  # stops what requires it too
    assert daemon.current("app") == "inactive" and not alive(app)


def test_ops_container_drives_the_daemon(daemon: Daemon, workdir: Path) -> None:
    """ops.Container over the daemon, applying a layer the way the charm does."""
    backend = types.SimpleNamespace(
        _juju_context=types.SimpleNamespace(version=ops.JujuVersion("3.6.4"))
    )
    container = ops.Container("workload", backend, daemon.client)  # type: ignore[arg-type]
    assert container.can_connect()
    layer: pebble.LayerDict = {
        "services": {"svc": daemon.service("sleep", "svc", startup="enabled")},  # type: ignore[typeddict-item]
        "checks": {"up": {"override": "replace", "period": "10s", "exec": {"command": "true"}}},
    }

    def apply() -> bool:
        before = container.get_plan().to_dict()
        container.add_layer("workload", layer, combine=True)
        if container.get_plan().to_dict() == before:
            return False
        container.replan()
        return True

    assert apply() is True
    assert container.get_service("svc").is_running()
    pid = daemon.pid("svc")
    assert apply() is False  # same layer again: nothing to write, nothing restarted
    assert daemon.pid("svc") == pid
    assert container.get_check("up").status == pebble.CheckStatus.UP

    conf = workdir / "conf" / "app.conf"
    assert not container.exists(conf)
    container.push(
        conf, "a = 1\n", make_dirs=True, permissions=0o640, user="nobody", group="nogroup"
    )
    assert container.exists(conf) and container.isdir(conf.parent) and not container.isdir(conf)
    with container.pull(conf) as f:
        assert f.read() == "a = 1\n"
    process = container.exec(["stat", "-c", "%a %U %G", str(conf)])
    assert process.wait_output()[0].split() == ["640", "nobody", "nogroup"]

    container.restart("svc")
    assert daemon.wait_pid("svc", not_=pid) != pid
    container.stop("svc")
    assert not container.get_service("svc").is_running()


def test_sigterm_stops_services_in_parallel_with_their_kill_delay(daemon: Daemon) -> None:
    client = daemon.client
    orphan_file = daemon.workdir / "orphan.pid"
    leaky = f"sh -c 'setsid sleep 1000 & echo $! > {orphan_file}; exec sleep 1000'"
    client.add_layer("l", {"services": {
        "one": daemon.service("stubborn", "one", **{"kill-delay": "1s"}),
        "two": daemon.service("stubborn", "two", **{"kill-delay": "1s"}),
        "leaky": {"override": "replace", "command": leaky},
    }})  # fmt: skip
    client.start_services(["one", "two", "leaky"])
    pids = [daemon.wait_pid("one"), daemon.wait_pid("two")]
    # A process that escaped its service's process group is re-parented to the daemon,
    # which reaps it as a container's init would.
    orphan = int(wait_for(lambda: orphan_file.exists() and orphan_file.read_text().strip()))
    client.stop_services(["leaky"])
    assert wait_for(lambda: proc_status(orphan)["PPid"] == str(daemon.proc.pid))

    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.95, elapsed  # one kill-delay, not two
    assert not any(alive(pid) for pid in [*pids, orphan])


def test_in_process_daemon_reports_check_transitions(tmp_path: Path) -> None:
    """The embeddable daemon: a tcp check's failure and recovery reach the callback."""
    events: list[tuple[str, str]] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    instance = daemon_module.Daemon(
        tmp_path / "pebble.sock",
        tmp_path / "state",
        on_check_transition=lambda *e: events.append(e),
    )
    instance.start()
    try:
        client = pebble.Client(socket_path=str(tmp_path / "pebble.sock"))
        check = {
            "override": "replace",
            "period": "100ms",
            "threshold": 1,
            "tcp": {"port": port, "host": "127.0.0.1"},
        }
        client.add_layer("l", {"checks": {"db-port": check}})
        wait_for(lambda: client.get_checks()[0].successes)
        listener.close()
        wait_for(lambda: events == [("db-port", "failed")], timeout=3)
        listener = socket.create_server(("127.0.0.1", port))
        wait_for(lambda: events == [("db-port", "failed"), ("db-port", "recovered")], timeout=3)
        assert client.get_checks()[0].status == pebble.CheckStatus.UP
    finally:
        listener.close()
        instance.stop()
    assert not (tmp_path / "pebble.sock").exists()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_applier_never_writes_through_a_users_link_and_rights_its_files(
    daemon: Daemon, workdir: Path
) -> None:
    """The charm's applier over a Pebble running as root, on a tree the workload user controls."""
    import applier  # noqa: PLC0415 - the charm's code, from src/
    import goal  # noqa: PLC0415

    backend = types.SimpleNamespace(
        _juju_context=types.SimpleNamespace(version=ops.JujuVersion("3.6.4"))
    )
    workload = applier.Workload(ops.Container("workload", backend, daemon.client))  # type: ignore[arg-type]
    postgres = pwd.getpwnam("postgres")
    # The workload user swapped its conf directory for a link to a directory root keeps.
    guarded = workdir / "guarded"
    guarded.mkdir(mode=0o755)
    conf = workdir / "conf"
    conf.symlink_to(guarded)
    os.lchown(conf, postgres.pw_uid, postgres.pw_gid)
    with pytest.raises(applier.UnsafePathError):
        workload.ensure_dir(str(conf))
    stat = guarded.stat()
    assert (stat.st_uid, stat.st_mode & 0o777) == (0, 0o755)  # not handed over, not chmodded

    # A file with the right content but readable by all and owned by root is written again.
    data = workdir / "data"
    workload.ensure_dir(str(data))
    secret = data / "pgpass"
    secret.write_text("*:*:*:backup:pw\n")
    secret.chmod(0o644)
    assert workload.write(str(secret), goal.File("*:*:*:backup:pw\n")) is True
    stat = secret.stat()
    assert (stat.st_uid, stat.st_mode & 0o777) == (postgres.pw_uid, 0o600)
    assert workload.write(str(secret), goal.File("*:*:*:backup:pw\n")) is False

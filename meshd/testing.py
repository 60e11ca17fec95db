"""A local federation of real processes, for tests, benchmarks, chaos runs and the demo.

:class:`LocalFederation` writes a federation with ``meshd init``, starts a real
nats-server (one node, or a JetStream cluster), optionally a TCP proxy in
front of the bus for each daemon (so a test can cut one daemon off, or a
benchmark can add network latency), and one ``meshd run`` process per region. Plugin authors can use it to test their
plugin against the real thing::

    with LocalFederation(tmp_path, regions=["eu-west-1", "eu-central-1"]) as fed:
        fed.wait_for(lambda: fed.member_state("eu-west-1", "eu-central-1") == "alive")
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import yaml

from .bootstrap import InitResult, init_federation
from .client import local_opener
from .config import LoadedConfig, RegionMap, load_model_file
from .natsserver import NatsCluster, NatsServer, authorization_block, free_port
from .samples import sample_file
from .tenantdir import (
    CopyDirectory,
    CustomerData,
    NewTenant,
    TenantChange,
    TenantConflict,
    apply_changes,
    new_tenant_id,
    with_customer,
)
from .tenants import Tenant

T = TypeVar("T")

BUILTIN_PLUGINS = ("health", "membership", "failover", "routing", "alerts", "keys", "metering", "billing",
                   "fencing", "partners", "audit", "deploy", "sla")
"""The first-party plugins; block them to test the core (or one plugin) alone."""


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def raw_http(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as is to a local port, half-close, and read the whole answer (for malformed requests)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
                interval: float = 0.02) -> Any:
    """:func:`wait_for` inside an event loop; ``predicate`` may return an awaitable.

    The predicate runs on the loop: it must not block (in-process daemons answer on that loop).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(interval)


def default_regions_file() -> Path | None:
    """The region map that ships with meshd (:mod:`meshd.samples`), else etc/region_map.yaml of the current directory."""
    try:
        return sample_file("region_map.yaml")
    except FileNotFoundError:
        candidate = Path.cwd() / "etc" / "region_map.yaml"
        return candidate if candidate.is_file() else None


def deep_merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- translations


def english_words(lang: str, *prefixes: str) -> set[str]:
    """Lowercased words of meshd's English messages under ``prefixes`` that ``lang``'s do not share.

    A word both versions of a message have (a command name, ``meshd``, ``RTT``) is
    technical, not English left untranslated. Placeholders are left out.
    """
    import re

    from .i18n import catalog

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z]{3,}", re.sub(r"\{\w+\}", "", text).lower()))

    en, other = catalog("en"), catalog(lang)
    found: set[str] = set()
    for key, text in en.items():
        if key.startswith(prefixes):
            found |= words(text) - words(other.get(key, ""))
    return found


def leftover_english(output: str, words: Iterable[str]) -> list[str]:
    """Which of ``words`` appear as whole words in ``output`` (case-insensitive)."""
    import re

    return sorted(w for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", output, re.IGNORECASE))


# ---------------------------------------------------------------- TCP proxy


class TcpProxy:
    """A loopback TCP proxy a test can cut and heal, standing between a daemon and NATS.

    ``cut()`` silently drops every byte both ways on open connections and on
    new ones (a dead network path: the client notices only by its pings);
    ``cut(reset=True)`` closes connections instead. ``heal()`` lets traffic
    through again for new connections.

    ``latency=(low, high)`` (seconds) holds every chunk of bytes, each way,
    for a delay drawn from that range before passing it on, as a long
    network path would: a daemon behind this proxy sees its NATS round trip
    grow by two such delays, and a message from one proxied daemon to another
    crosses two proxies. Bytes keep their order (a chunk never overtakes the
    one before it), as on a TCP connection.
    """

    def __init__(self, upstream: tuple[str, int], port: int | None = None,
                 latency: tuple[float, float] | None = None, rng: random.Random | None = None):
        if latency is not None and not 0 <= latency[0] <= latency[1]:
            raise ValueError(f"latency range {latency!r}: want (low, high) seconds with 0 <= low <= high")
        self.upstream = upstream
        self.latency = latency
        self._rng = rng or random.Random()
        self.held_chunks = 0
        """Chunks that entered the delay line of ``latency``."""
        self.delayed_chunks = 0
        """Chunks held back by ``latency`` and then passed on."""
        self.lost_chunks = 0
        """Chunks held back by ``latency`` and lost because the proxy was cut meanwhile."""
        self.port = port or free_port()
        self._cut = threading.Event()
        self._closing = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name=f"proxy:{self.port}")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self, reset: bool = False) -> None:
        self._cut.set()
        if reset:
            self._close_all()

    def heal(self) -> None:
        # Connections that lived through the cut are closed, so the client
        # reconnects cleanly instead of resuming a stream with a hole in it.
        self._close_all()
        self._cut.clear()

    def set_latency(self, latency: tuple[float, float] | None) -> None:
        """Delay new connections by ``latency`` (None: no delay); open ones are closed, as on a new path."""
        if latency is not None and not 0 <= latency[0] <= latency[1]:
            raise ValueError(f"latency range {latency!r}: want (low, high) seconds with 0 <= low <= high")
        self.latency = latency
        self._close_all()

    def retarget(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._closing.set()
        self._close_all()
        self._listener.close()
        self._thread.join(2)

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                with self._lock:
                    self._conns.add(client)  # held open, never answered: a black hole
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, server))
            for a, b in ((client, server), (server, client)):
                if self.latency is None:
                    threading.Thread(target=self._pump, args=(a, b, _direct(b)), daemon=True).start()
                else:
                    line: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
                    threading.Thread(target=self._pump, args=(a, b, self._delayer(line)), daemon=True).start()
                    threading.Thread(target=self._deliver, args=(line, a, b), daemon=True).start()

    def _delayer(self, line: queue.SimpleQueue[tuple[float, bytes] | None]) -> Callable[[bytes | None], None]:
        assert self.latency is not None
        low, high = self.latency
        last_due = 0.0

        def put(data: bytes | None) -> None:
            nonlocal last_due
            if data is None:
                line.put(None)
                return
            # Never earlier than the chunk before: TCP does not reorder.
            last_due = max(time.monotonic() + self._rng.uniform(low, high), last_due)
            self.held_chunks += 1
            line.put((last_due, data))

        return put

    def _deliver(self, line: queue.SimpleQueue[tuple[float, bytes] | None], src: socket.socket,
                 dst: socket.socket) -> None:
        """Pass on each chunk of ``line`` when it is due; at the end, close both sides."""
        try:
            while (item := line.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if self._cut.is_set():
                    self.lost_chunks += 1  # in flight when the path died
                    continue
                self.delayed_chunks += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(src, dst)

    def _pump(self, src: socket.socket, dst: socket.socket, send: Callable[[bytes | None], None]) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self._cut.is_set():
                    continue  # dropped on the floor
                send(data)
        except OSError:
            pass
        finally:
            if self.latency is None:
                _shutdown(src, dst)
            else:
                send(None)  # the delay line closes both sides once what it holds is delivered


def _direct(dst: socket.socket) -> Callable[[bytes | None], None]:
    def send(data: bytes | None) -> None:
        if data is not None:
            dst.sendall(data)
    return send


def _shutdown(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# ---------------------------------------------------------------- the federation


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM (after SIGCONT, in case it is paused) and wait; the exit code, or -9 if it had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
    return proc.returncode


class LocalFederation:
    """Real nats-server(s) and one ``meshd run`` process per region, on loopback."""

    def __init__(self, workdir: Path, *, regions: Sequence[str] | None = None, regions_file: Path | None = None,
                 federation: str = "test", nats_nodes: int = 1, proxies: bool = False,
                 pin: Mapping[str, int] | None = None, config: Mapping[str, Any] | None = None,
                 per_region: Mapping[str, Mapping[str, Any]] | None = None, shared_files: Iterable[Path] = (),
                 env: Mapping[str, str] | None = None, lang: str = "en",
                 broken_links: Iterable[tuple[str, str]] = (), latency: tuple[float, float] | None = None,
                 samples: bool = False):
        if latency is not None and not proxies:
            raise ValueError("latency is added by the TCP proxies: pass proxies=True with it")
        self.latency = latency
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        source = regions_file or default_regions_file()
        if source is None:
            raise FileNotFoundError("no region map: pass regions_file")
        region_map = load_model_file(source, RegionMap)
        chosen = list(regions) if regions else list(region_map.regions)
        unknown = set(chosen) - set(region_map.regions)
        if unknown:
            raise ValueError(f"not in {source}: {sorted(unknown)}")
        # A region map of just the chosen regions: quorum counts configured regions.
        self.regions_file = self.workdir / "regions.yaml"
        raw = yaml.safe_load(source.read_text())
        raw["regions"] = {r: raw["regions"][r] for r in chosen}
        self.regions_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        for extra in shared_files:
            (self.workdir / Path(extra).name).write_bytes(Path(extra).read_bytes())
        self.regions = chosen
        self.federation = federation
        self.http_ports = {r: free_port() for r in chosen}
        nats_port = free_port()
        self.init: InitResult = init_federation(
            federation=federation, regions_file=self.regions_file, nats_url=f"nats://127.0.0.1:{nats_port}",
            out=self.workdir / "federation", shared_files=[Path(p).name for p in shared_files], force=True,
            lang=lang, http_ports=self.http_ports, samples=samples,
        )
        self.dir = self.init.out
        passwords = {r: (self.dir / "secrets" / f"{r}.nats-password").read_text().strip() for r in chosen}
        # A broken link (a, b): NATS refuses every message a addresses to b and
        # b to a, while both still reach everyone else (an asymmetric network).
        deny: dict[str, list[str]] = {}
        for a, b in broken_links:
            deny.setdefault(a, []).append(f"meshd.{federation}.*.{a}.{b}")
            deny.setdefault(b, []).append(f"meshd.{federation}.*.{b}.{a}")
        auth = authorization_block(federation, passwords, deny_publish=deny,
                                   jurisdictions={r: region_map.regions[r].jurisdiction for r in chosen})
        self.nats_nodes = nats_nodes
        if nats_nodes == 1:
            self.cluster: NatsCluster | None = None
            self.servers: list[NatsServer] = [NatsServer(self.workdir / "nats", name="n1", port=nats_port,
                                                         authorization=auth)]
        else:
            # A pinned daemon must stay on its node: the cluster does not advertise the others.
            self.cluster = NatsCluster(self.workdir / "nats", size=nats_nodes, authorization=auth,
                                       no_advertise=bool(pin))
            self.servers = self.cluster.nodes
        self.pin = dict(pin or {})
        self.proxies: dict[str, TcpProxy] = {}
        self.use_proxies = proxies
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = self.workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.env = dict(env or {})
        self._config_patch = dict(config or {})
        self._per_region = {k: dict(v) for k, v in (per_region or {}).items()}

    # ------------------------------------------------------------ files

    def config_path(self, region: str) -> Path:
        return self.init.configs[region]

    def state_dir(self, region: str) -> Path:
        return self.dir / "state" / region

    def read_config(self, region: str) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.config_path(region).read_text())
        return data

    def write_config(self, region: str, data: Mapping[str, Any]) -> None:
        self.config_path(region).write_text(yaml.safe_dump(dict(data), sort_keys=False))

    def patch_config(self, region: str, patch: Mapping[str, Any]) -> None:
        self.write_config(region, deep_merge(self.read_config(region), patch))

    def _server_urls(self, region: str) -> list[str]:
        if region in self.proxies:
            return [self.proxies[region].url]
        if region in self.pin:
            return [self.servers[self.pin[region]].url]
        return [s.url for s in self.servers]

    # ------------------------------------------------------------ processes

    def start(self, daemons: bool = True, wait: bool = True) -> LocalFederation:
        if self.cluster is not None:
            self.cluster.start()
        else:
            self.servers[0].start()
        for region in self.regions:
            if self.use_proxies:
                upstream = self.servers[self.pin.get(region, 0)]
                self.proxies[region] = TcpProxy(("127.0.0.1", upstream.port), latency=self.latency)
            patch = deep_merge(self._config_patch, self._per_region.get(region, {}))
            patch = deep_merge(patch, {"nats": {"servers": self._server_urls(region)}})
            self.patch_config(region, patch)
        if daemons:
            for region in self.regions:
                self.start_daemon(region, wait=False)
            if wait:
                for region in self.regions:
                    self.wait_ready(region)
        return self

    def start_daemon(self, region: str, wait: bool = True, extra_env: Mapping[str, str] | None = None) -> None:
        proc = self.procs.get(region)
        if proc is not None and proc.poll() is None:
            raise RuntimeError(f"{region} is already running")
        log = open(self.logs / f"{region}.log", "ab")
        env = {**os.environ, **self.env, **(extra_env or {})}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.procs[region] = subprocess.Popen(
            [sys.executable, "-m", "meshd", "run", "--config", str(self.config_path(region)), "--log-format", "json"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready(region)

    def running(self, region: str) -> bool:
        proc = self.procs.get(region)
        return proc is not None and proc.poll() is None

    def signal(self, region: str, signum: int) -> None:
        self.procs[region].send_signal(signum)

    def kill(self, region: str) -> None:
        """SIGKILL: no leave, no cleanup, as in a crash."""
        proc = self.procs[region]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def pause(self, region: str) -> None:
        self.signal(region, signal.SIGSTOP)

    def resume(self, region: str) -> None:
        self.signal(region, signal.SIGCONT)

    def stop_daemon(self, region: str, timeout: float = 10.0) -> int:
        """SIGTERM and wait; the exit code (or -9 if it had to be killed)."""
        return stop_process(self.procs[region], timeout)

    def cut(self, region: str, reset: bool = False) -> None:
        self.proxies[region].cut(reset=reset)

    def heal(self, region: str) -> None:
        self.proxies[region].heal()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for proxy in self.proxies.values():
            proxy.close()
        for server in self.servers:
            server.stop()

    def __enter__(self) -> LocalFederation:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ observing

    def http(self, region: str, path: str, *, method: str = "GET", body: Any = None,
             admin: bool = False, timeout: float = 2.0) -> tuple[int, Any]:
        """(status, JSON body) from the region's local HTTP endpoint; (0, None) if nothing answers."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_ports[region]}{path}", data=data, method=method)
        if admin:
            token = (self.state_dir(region) / "admin.token").read_text().strip()
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with local_opener().open(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except OSError:
            return 0, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def status(self, region: str) -> dict[str, Any] | None:
        code, body = self.http(region, "/status")
        return body if code == 200 else None

    def metric(self, region: str, name: str, /, **labels: str) -> float:
        """A sample's value from the region's /metrics (0 if absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        req = urllib.request.Request(f"http://127.0.0.1:{self.http_ports[region]}/metrics")
        with local_opener().open(req, timeout=2) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return 0.0

    def members(self, observer: str) -> dict[str, dict[str, Any]]:
        doc = self.status(observer) or {}
        return {m["region"]: m for m in doc.get("members", [])}

    def member_state(self, observer: str, region: str) -> str | None:
        return self.members(observer).get(region, {}).get("state")

    def wait_for(self, predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
                 what: str = "condition") -> T:
        """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
        return wait_for(predicate, timeout, f"{what}; logs in {self.logs}", interval)

    def wait_ready(self, region: str, timeout: float = 30.0) -> None:
        def ready() -> bool:
            proc = self.procs[region]
            if proc.poll() is not None:
                tail = (self.logs / f"{region}.log").read_text()[-2000:]
                raise RuntimeError(f"{region} exited with {proc.returncode}:\n{tail}")
            doc = self.status(region)
            return bool(doc and doc.get("state") == "ready")

        self.wait_for(ready, timeout, what=f"{region} ready")

    def log_text(self, region: str) -> str:
        return (self.logs / f"{region}.log").read_text(errors="replace")


# ---------------------------------------------------------------- in-process daemons


def write_federation(tmp_path: Path, regions: Sequence[str], nats_url: str, *, federation: str = "test",
                     patch: dict[str, Any] | None = None) -> dict[str, Path]:
    """``meshd init`` for ``regions`` (from the sample region map), without NATS auth; config paths by region."""
    import yaml

    source = default_regions_file()
    assert source is not None
    raw = yaml.safe_load(source.read_text())
    raw["regions"] = {r: raw["regions"][r] for r in regions}
    regions_file = tmp_path / "regions.yaml"
    regions_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = init_federation(federation=federation, regions_file=regions_file, nats_url=nats_url,
                             out=tmp_path / "federation", http_base_port=0, force=True, samples=False)
    for path in result.configs.values():
        data = yaml.safe_load(path.read_text())
        data["nats"] = {"servers": [nats_url]}  # the test server has no auth
        data["http"] = {"port": 0}
        path.write_text(yaml.safe_dump(deep_merge(data, patch or {}), sort_keys=False))
    return result.configs


@contextlib.asynccontextmanager
async def running_daemons(configs: dict[str, Path], *, extra_plugins: Sequence[tuple[str, object]] = (),
                          blocked: Sequence[str] = ()) -> AsyncIterator[dict[str, Any]]:
    """Start in-process daemons for ``configs`` (several in one event loop) and stop them at exit.

    ``extra_plugins`` are ``(name, factory)`` pairs: a class is instantiated
    per daemon. ``blocked`` names plugins not to load.
    """
    from .daemon import Daemon
    from .plugins import Hooks

    daemons: dict[str, Daemon] = {}
    async with anyio.create_task_group() as tg:
        for region, path in configs.items():
            extra = [(name, p() if isinstance(p, type) else p) for name, p in extra_plugins]
            hooks = Hooks.load(blocked=blocked, extra=extra)
            config: LoadedConfig = hooks.load_config(path)
            daemon = Daemon(config, hooks)
            daemons[region] = daemon
            await tg.start(daemon.run)
        try:
            yield daemons
        finally:
            for daemon in daemons.values():
                daemon.stop()


# ---------------------------------------------------------------- a tenant directory without a bus


class MemoryTenantDirectory(CopyDirectory):
    """The :class:`~meshd.tenantdir.TenantDirectory` contract in memory, for fast tests of other plugins.

    ``customers`` is shared between directories made with the same dict, as
    if by jurisdiction bucket; the copy is this object's own.
    """

    def __init__(self, tenants: Iterable[Tenant] = (), *, jurisdiction: str | None = None,
                 clock: Callable[[], float] = time.time):
        super().__init__(jurisdiction)
        self.clock = clock
        self._revision = 0
        self._customers: dict[str, CustomerData] = {}
        for tenant in tenants:
            assert tenant.id is not None
            self._revision += 1
            self._copy[tenant.id] = tenant.model_copy(update={"revision": self._revision})

    def _next(self) -> int:
        self._revision += 1
        return self._revision

    async def create(self, new: NewTenant, *, customer: CustomerData | None = None) -> Tenant:
        if customer is not None:
            self._check_jurisdiction("(new)", new.residency)
        tenant_id = new_tenant_id()
        while tenant_id in self._copy:
            tenant_id = new_tenant_id()
        now = self.clock()
        tenant = Tenant(id=tenant_id, created=now, updated=now, revision=self._next(),
                        **new.model_dump(exclude_none=True))
        if customer is not None:
            self._customers[tenant_id] = customer
            tenant = with_customer(tenant, customer)
        self._apply(TenantChange("put", tenant_id, tenant, tenant.revision))
        return tenant

    async def update(self, tenant_id: str, changes: Mapping[str, Any], *,
                     expected_revision: int | None = None) -> Tenant:
        current = self._known(tenant_id)
        if expected_revision is not None and expected_revision != current.revision:
            raise TenantConflict(tenant_id, current.revision)
        tenant = apply_changes(current, changes, self.clock()).model_copy(update={"revision": self._next()})
        self._apply(TenantChange("put", tenant_id, tenant, tenant.revision))
        return tenant

    async def delete(self, tenant_id: str, *, expected_revision: int | None = None) -> Tenant:
        return await self.update(tenant_id, {"status": "deleted"}, expected_revision=expected_revision)

    async def customer_data(self, tenant_id: str) -> CustomerData | None:
        self._check_jurisdiction(tenant_id, self._known(tenant_id).residency)
        return self._customers.get(tenant_id)

    async def set_customer_data(self, tenant_id: str, data: CustomerData) -> None:
        current = self._known(tenant_id)
        self._check_jurisdiction(tenant_id, current.residency)
        self._customers[tenant_id] = data
        tenant = with_customer(current, data)
        self._apply(TenantChange("put", tenant_id, tenant, current.revision))


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 30.0) -> list[str]:
        """Collect datagrams until one holds ``line``; return everything received so far."""
        deadline = time.monotonic() + timeout
        while not any(line in m.splitlines() for m in self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {line!r} from the daemon; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return self.messages

    def drain(self) -> list[str]:
        """Everything sent so far, without waiting."""
        self.sock.setblocking(False)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return self.messages

    def close(self) -> None:
        self.sock.close()

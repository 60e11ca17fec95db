"""The builtin probe kinds against real things on loopback: TCP listeners, HTTP(S) servers, processes, the host.

No NATS here: each probe is built from its settings model and checked
directly, or through a ProbeRunner (which enforces the deadline).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd import Metrics
from meshd_plugins.health.engine import ProbeRunner
from meshd_plugins.health.exposition import HealthMetrics
from meshd_plugins.health.kind_command import CommandProbe
from meshd_plugins.health.kind_host import CpuProbe, DiskProbe, LoadProbe, MemoryProbe
from meshd_plugins.health.kind_http import HttpProbe
from meshd_plugins.health.kind_tcp import TcpProbe
from meshd_plugins.health.probes import Level, Probe, ProbeContext, ProbeResult
from meshd_plugins.health.settings import ResolvedProbe

pytestmark = pytest.mark.anyio


@pytest.fixture
def context(tmp_path: Path) -> ProbeContext:
    return ProbeContext(region="eu-west-1", state_dir=tmp_path, secret=lambda v: v)


def make(cls: type[Probe], context: ProbeContext, **settings: Any) -> Probe:
    return cls(cls.Settings.model_validate({"name": "p", "kind": cls.kind, **settings},
                                           context={"base_dir": context.state_dir}), context)


def runner(cls: type[Probe], context: ProbeContext, metrics: Metrics | None = None, **settings: Any) -> ProbeRunner:
    probe = make(cls, context, **settings)
    return ProbeRunner(ResolvedProbe(cls, probe.settings), context, HealthMetrics(metrics or Metrics()),
                       logging.getLogger("test.health"))


# ---------------------------------------------------------------- tcp


async def test_tcp_probe_connects_and_reports_refusal(context: ProbeContext) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    probe = make(TcpProbe, context, host="127.0.0.1", port=port)
    result = await probe.check()
    assert result.level is Level.OK and result.value is not None and result.value > 0
    listener.close()
    result = await probe.check()
    assert result.level is Level.CRITICAL
    assert result.error == f"cannot connect to 127.0.0.1:{port}: Connection refused"


# ---------------------------------------------------------------- http(s)


class Handler(BaseHTTPRequestHandler):
    seen_headers: list[dict[str, str]] = []

    def do_GET(self) -> None:
        Handler.seen_headers.append(dict(self.headers))
        if self.path == "/slow":
            time.sleep(0.4)
        code = {"/fail": 503, "/moved": 302}.get(self.path, 200)
        body = b"all good\n" if code == 200 else b"no\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def serve(server: ThreadingHTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_server() -> Iterator[str]:
    yield from serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


async def test_http_probe_status_codes(context: ProbeContext, http_server: str) -> None:
    ok = await make(HttpProbe, context, url=f"http://{http_server}/ok").check()
    assert ok.level is Level.OK and ok.value is not None and ok.value > 0

    failed = await make(HttpProbe, context, url=f"http://{http_server}/fail").check()
    assert failed.level is Level.CRITICAL
    assert failed.error == f"http://{http_server}/fail answered 503, expected 2xx, 3xx"

    accepted = await make(HttpProbe, context, url=f"http://{http_server}/fail", expect_status=[503]).check()
    assert accepted.level is Level.OK

    not_followed = await make(HttpProbe, context, url=f"http://{http_server}/moved", expect_status=[200]).check()
    assert not_followed.level is Level.CRITICAL and "answered 302" in (not_followed.error or "")


async def test_http_probe_latency_thresholds(context: ProbeContext, http_server: str) -> None:
    url = f"http://{http_server}/slow"  # the server sleeps 0.4 s before answering
    warned = await make(HttpProbe, context, url=url, latency_warning="100ms").check()
    assert warned.level is Level.WARNING and warned.value is not None and warned.value >= 0.4
    assert "latency" in (warned.error or "") and "warning threshold 100ms" in (warned.error or "")
    critical = await make(HttpProbe, context, url=url, latency_warning="100ms", latency_critical="200ms").check()
    assert critical.level is Level.CRITICAL and "critical threshold 200ms" in (critical.error or "")


async def test_http_probe_body_and_secret_headers(context: ProbeContext, http_server: str) -> None:
    Handler.seen_headers.clear()
    token = "Bearer s3cr3t-token-value"
    probe = make(HttpProbe, context, url=f"http://{http_server}/ok?key=also-secret", body_contains="all good",
                 headers={"Authorization": token})
    assert (await probe.check()).level is Level.OK
    assert Handler.seen_headers[-1]["Authorization"] == token
    missing = await make(HttpProbe, context, url=f"http://{http_server}/ok?key=also-secret",
                         body_contains="database: up", headers={"Authorization": token}).check()
    assert missing.level is Level.CRITICAL
    # What the probe says (logs, /status) holds neither the header nor the query string.
    assert "s3cr3t" not in (missing.error or "") and "also-secret" not in (missing.error or "")
    assert "also-secret" not in str(probe.describe())


async def test_http_probe_refused(context: ProbeContext) -> None:
    spare = socket.create_server(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    result = await make(HttpProbe, context, url=f"http://127.0.0.1:{port}/").check()
    assert result.level is Level.CRITICAL and result.error == f"http://127.0.0.1:{port}/: Connection refused"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshd test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_https_probe_verifies_the_certificate(context: ProbeContext, tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    for where in serve(server):
        url = f"https://{where}/ok"
        trusted = await make(HttpProbe, context, url=url, ca_file=str(cert_file)).check()
        assert trusted.level is Level.OK, trusted.error
        untrusted = await make(HttpProbe, context, url=url).check()
        assert untrusted.level is Level.CRITICAL and "TLS error" in (untrusted.error or "")
        unverified = await make(HttpProbe, context, url=url, tls_verify=False).check()
        assert unverified.level is Level.OK


# ---------------------------------------------------------------- command


async def test_command_exit_codes_map_to_levels(context: ProbeContext) -> None:
    assert (await make(CommandProbe, context, command=["true"]).check()).level is Level.OK
    warned = await make(CommandProbe, context, command=["sh", "-c", "echo 'QUEUE WARNING - 12 jobs'; exit 1"]).check()
    assert warned.level is Level.WARNING and warned.error == "sh exited with 1: QUEUE WARNING - 12 jobs"
    crit = await make(CommandProbe, context, command="sh -c 'echo broken >&2; exit 2'").check()
    assert crit.level is Level.CRITICAL and crit.error == "sh exited with 2: broken" and crit.value == 2
    custom = await make(CommandProbe, context, command="sh -c 'exit 3'", warning_exit_codes=[3]).check()
    assert custom.level is Level.WARNING
    missing = await make(CommandProbe, context, command=["/nonexistent/check_thing"]).check()
    assert missing.level is Level.CRITICAL and "cannot run check_thing" in (missing.error or "")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent, the shell, was killed first).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_a_hanging_command_and_its_children_are_killed_at_the_timeout(context: ProbeContext,
                                                                           tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pids}.child; echo $$ > {pids}.shell; wait"
    r = runner(CommandProbe, context, command=["sh", "-c", script], timeout="1s")
    began = time.monotonic()
    result, _, timed_out = await r.check_once()
    assert timed_out and result.level is Level.CRITICAL and result.error == "no answer within 1s"
    assert time.monotonic() - began < 15  # it did not wait for sleep 300
    shell, child = int(Path(f"{pids}.shell").read_text()), int(Path(f"{pids}.child").read_text())
    with anyio.fail_after(10):
        while alive(shell) or alive(child):
            await anyio.sleep(0.05)


async def test_background_children_of_a_finished_command_are_killed(context: ProbeContext, tmp_path: Path) -> None:
    pid_file = tmp_path / "bg.pid"
    probe = make(CommandProbe, context, command=["sh", "-c", f"sleep 300 & echo $! > {pid_file}; exit 0"])
    with anyio.fail_after(10):
        assert (await probe.check()).level is Level.OK  # did not wait for the background sleep's pipe
        child = int(pid_file.read_text())
        while alive(child):
            await anyio.sleep(0.05)


# ---------------------------------------------------------------- host


async def test_host_probes_measure_sane_values(context: ProbeContext, tmp_path: Path) -> None:
    for cls, low, high in ((CpuProbe, 0, 100), (MemoryProbe, 0, 100), (DiskProbe, 0, 100), (LoadProbe, 0, 1000)):
        result = await make(cls, context, warning=None, critical=None).check()
        assert result.level is Level.OK, (cls.kind, result)
        assert result.value is not None and low <= result.value <= high, (cls.kind, result.value)


async def test_host_thresholds_turn_into_levels(context: ProbeContext, tmp_path: Path) -> None:
    # Disk and memory use are never below 0.001 % on a running machine.
    disk = await make(DiskProbe, context, path=str(tmp_path), warning=0.001, critical=None).check()
    assert disk.level is Level.WARNING and f"disk use of {tmp_path}" in (disk.error or "")
    memory = await make(MemoryProbe, context, warning=None, critical=0.001).check()
    assert memory.level is Level.CRITICAL and "critical threshold" in (memory.error or "")
    gone = await make(DiskProbe, context, path=str(tmp_path / "no" / "such" / "dir")).check()
    assert gone.level is Level.CRITICAL and "cannot read the filesystem" in (gone.error or "")


async def test_cpu_probe_keeps_its_own_baseline(context: ProbeContext) -> None:
    a, b = make(CpuProbe, context), make(CpuProbe, context)
    await a.check()
    await b.check()
    assert a._last is not None and b._last is not None and a._last is not b._last


# ---------------------------------------------------------------- the runner's guarantees


class Misbehaving(Probe):
    kind = "misbehaving"
    mode = "raise"
    release = threading.Event()

    async def check(self) -> ProbeResult:
        if self.mode == "raise":
            raise ValueError("bad reading")
        if self.mode == "garbage":
            return 42  # type: ignore[return-value]
        if self.mode == "hang":
            await anyio.sleep_forever()
        if self.mode == "stuck":
            await self.run_blocking(self.release.wait)
        return ProbeResult.ok()


async def test_a_probe_that_raises_or_returns_garbage_is_a_critical_result(context: ProbeContext) -> None:
    r = runner(Misbehaving, context, timeout="1s")
    r.probe.mode = "raise"  # type: ignore[attr-defined]
    result, _, timed_out = await r.check_once()
    assert not timed_out and result.level is Level.CRITICAL
    assert result.error == "the probe raised ValueError: bad reading"
    r.probe.mode = "garbage"  # type: ignore[attr-defined]
    result, _, _ = await r.check_once()
    assert result.error == "the probe returned int, not a ProbeResult"


async def test_a_hanging_probe_times_out(context: ProbeContext) -> None:
    metrics = Metrics()
    r = runner(Misbehaving, context, metrics, timeout="200ms")
    r.probe.mode = "hang"  # type: ignore[attr-defined]
    with anyio.fail_after(10):
        result, duration, timed_out = await r.check_once()
    assert timed_out and result.error == "no answer within 0.2s" and duration >= 0.2
    r.record(result, duration, timed_out)
    assert metrics.value("health_probe_timeouts_total", probe="p") == 1
    assert metrics.value("health_probe_failures_total", probe="p", level="critical") == 1
    assert metrics.value("health_probe_duration_seconds_count", probe="p") == 1


async def test_a_probe_stuck_in_a_thread_is_not_started_twice(context: ProbeContext) -> None:
    Misbehaving.release.clear()
    r = runner(Misbehaving, context, timeout="200ms")
    r.probe.mode = "stuck"  # type: ignore[attr-defined]
    with anyio.fail_after(10):
        _, _, timed_out = await r.check_once()
        assert timed_out
        second, _, timed_out = await r.check_once()
    assert not timed_out and second.level is Level.CRITICAL and "still stuck" in (second.error or "")
    Misbehaving.release.set()  # the kernel call returns at last
    with anyio.fail_after(10):
        while "p" in context._busy:
            await anyio.sleep(0.02)
        third, _, _ = await r.check_once()
    assert third.level is Level.OK

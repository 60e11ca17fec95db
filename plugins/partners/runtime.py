"""The partners plugin inside a daemon: the key store watch, the API listener and what routes need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from meshd.identity import load_private_key
from meshd.members import MemberState

from .app import PartnerAPI
from .config import PartnersConfig
from .idempotency import IdempotencyStore
from .problems import Problem
from .ratelimit import RateLimiter
from .routes import Routes
from .store import PartnerStore

SECTION = "partners"


class Runtime:
    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.log = daemon.log.getChild(SECTION)
        self.settings: PartnersConfig = daemon.plugin_config(SECTION)
        self.store: PartnerStore | None = None
        self.idempotency: IdempotencyStore | None = None
        self.members: dict[str, str] = {}
        self.audit: Any = None
        self.signing_key = load_private_key(daemon.config.daemon.identity.private_key)
        self.server: Any = None
        self.api: PartnerAPI | None = None
        self.port: int | None = None
        self.state = "starting"

    async def start(self) -> None:
        from meshd.identity import Signer
        from meshd_plugins.failover.audit import AuditLog

        s = self.settings
        kv = await self.daemon.transport.key_value(s.bucket, replicas=s.replicas, history=5)
        self.store = PartnerStore(kv, self.log)
        idem_kv = await self.daemon.transport.key_value(s.idempotency_bucket, replicas=s.replicas,
                                                        ttl=s.idempotency_ttl)
        self.idempotency = IdempotencyStore(idem_kv)
        path = s.audit_log or Path(self.daemon.state_dir) / "partners" / "audit.log"
        self.audit = AuditLog(path, self.daemon.region, Signer(self.signing_key))
        check = self.audit.open()
        if check.problem is not None:
            self.log.error("partner audit log did not verify (%s); moved aside, a new chain starts", check.problem)

    # ------------------------------------------------------------ services

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self.store is not None
        await self.store.watch(task_status=task_status)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        from .openapi import document
        from .server import EmbeddedServer, bind, make_config, serve

        assert self.store is not None
        s = self.settings
        api = PartnerAPI(self.store, self.idempotency, RateLimiter(s.rate_limit.per_second, s.rate_limit.burst),
                         s.max_body, self.log, self.daemon.metrics)
        Routes(self).register(api)
        self.api = api
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        spec = document()

        async def openapi(_request: Any) -> JSONResponse:
            return JSONResponse(spec)

        app = api.app([Route("/v1/openapi.json", openapi, methods=["GET"])])
        sock = bind(s.listen, s.port)
        self.port = sock.getsockname()[1]
        self.server = EmbeddedServer(make_config(app, tls=s.tls, grace=s.shutdown_grace))
        scheme = "https" if s.tls else "http"
        self.log.info("partner API on %s://%s:%d", scheme, s.listen, self.port)
        self.state = "serving"
        try:
            await serve(self.server, sock, task_status=task_status)
        finally:
            self.state = "stopped"

    async def stop(self) -> None:
        """Let in-flight requests finish within ``shutdown_grace``, then cut the rest."""
        server = self.server
        if server is None:
            return
        server.should_exit = True
        with anyio.move_on_after(self.settings.shutdown_grace):
            await server.finished.wait()
        if not server.finished.is_set():
            server.force_exit = True

    # ------------------------------------------------------------ what routes need

    def directory(self) -> Any:
        directory = getattr(self.daemon, "tenants", None) or self.daemon.config.tenants
        if directory is None or not hasattr(directory, "list"):
            raise Problem("unavailable", reason="no_registry")
        return directory

    def writable(self) -> Any:
        directory = self.directory()
        if getattr(directory, "read_only", True):
            raise Problem("unavailable", reason="read_only")
        return directory

    def member_state(self, region: str) -> str:
        if region == self.daemon.region:
            return MemberState.ALIVE.value
        return self.members.get(region, "never_heard")

    def alive(self, region: str) -> bool:
        return self.member_state(region) == MemberState.ALIVE.value

    def plans(self) -> set[str]:
        files = self.billing_files()
        if files is not None:
            return set(files.matrix.plans)
        return set(self.settings.plans)

    def billing_files(self) -> Any:
        plugin = self.daemon.hooks.pm.get_plugin("billing")
        runtime = getattr(plugin, "runtime", None)
        return getattr(runtime, "files", None)

    def status(self) -> dict[str, Any]:
        store = self.store
        return {"state": self.state, "port": self.port, "tls": self.settings.tls is not None,
                "partners": len(store.partners) if store else 0,
                "keys": sum(1 for k in store.keys.values() if k.revoked is None) if store else 0,
                "bad_records": store.bad_records if store else 0}

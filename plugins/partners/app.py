"""The partner API as an ASGI app: authentication, limits and errors around every route.

Each route handler is wrapped once (:meth:`PartnerAPI.endpoint`) instead of
stacked middleware: the wrapper authenticates the key, applies the rate
limit and the role, reads and checks the body, runs POSTs through the
idempotency store and renders any :class:`Problem` as problem+json in the
caller's language. Handlers only see a checked :class:`Call`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .apikeys import parse_key
from .idempotency import IdempotencyStore, Stored, fingerprint
from .problems import CONTENT_TYPE as PROBLEM_TYPE
from .problems import Problem, negotiate
from .ratelimit import RateLimiter
from .store import ApiKey, PartnerStore

JSON_TYPE = "application/json"
BODY_METHODS = ("POST", "PUT", "PATCH")

ROLE_RANK = {"read": 0, "deployer": 1, "admin": 2}
NEEDS = {"read": "read", "write": "deployer", "keys": "admin"}
"""What each kind of route needs: GETs any role, writes deployer or admin, key management admin."""


@dataclass
class Call:
    """One authenticated request, as handlers see it."""

    request: Request
    key: ApiKey
    body: Any
    lang: str

    @property
    def partner(self) -> str:
        return self.key.partner

    @property
    def address(self) -> str:
        client = self.request.client
        return client.host if client else ""

    def path_param(self, name: str) -> str:
        return str(self.request.path_params[name])


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] | None = None


Handler = Callable[[Call], Awaitable[Answer]]


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def problem_response(problem: Problem, lang: str) -> Response:
    return Response(problem.encode(lang), problem.status, headers=problem.headers or None, media_type=PROBLEM_TYPE)


class PartnerAPI:
    def __init__(self, store: PartnerStore, idempotency: IdempotencyStore | None, limiter: RateLimiter,
                 max_body: int, log: logging.Logger, metrics: Any = None):
        self.store = store
        self.idempotency = idempotency
        self.limiter = limiter
        self.max_body = max_body
        self.log = log
        self.routes: list[tuple[str, str, str, Handler]] = []
        self._refused = metrics.counter("partners_refused_total", "Partner API requests refused, by problem code",
                                        ["code"]) if metrics else None
        self._served = metrics.counter("partners_requests_total", "Partner API requests answered, by status class",
                                       ["status"]) if metrics else None

    def route(self, method: str, path: str, kind: str, handler: Handler) -> None:
        self.routes.append((method, path, kind, handler))

    def app(self, extra: list[Route] | None = None) -> Starlette:
        grouped: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
        for method, path, kind, handler in self.routes:
            grouped.setdefault(path, {})[method] = self.endpoint(handler, kind, method)
        routes = [Route(path, self._dispatch(methods), methods=list(methods)) for path, methods in grouped.items()]
        return Starlette(routes=routes + (extra or []),
                         exception_handlers={HTTPException: self._http_exception})  # type: ignore[dict-item]

    @staticmethod
    def _dispatch(methods: dict[str, Callable[[Request], Awaitable[Response]]]
                  ) -> Callable[[Request], Awaitable[Response]]:
        async def dispatch(request: Request) -> Response:
            return await methods[request.method](request)
        return dispatch

    async def _http_exception(self, request: Request, exc: HTTPException) -> Response:
        lang = negotiate(request.headers.get("accept-language"))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "validation")
        return self._refuse(Problem(code), lang)

    def _refuse(self, problem: Problem, lang: str) -> Response:
        if self._refused is not None:
            self._refused.labels(problem.code).inc()
        return problem_response(problem, lang)

    # ------------------------------------------------------------ the wrapper

    def endpoint(self, handler: Handler, kind: str, method: str) -> Callable[[Request], Awaitable[Response]]:
        needed = ROLE_RANK[NEEDS[kind]]

        async def serve(request: Request) -> Response:
            lang = negotiate(request.headers.get("accept-language"))
            try:
                key = await self._authenticate(request)
                if ROLE_RANK.get(key.role, -1) < needed:
                    raise Problem("forbidden", role=key.role)
                raw = await self._read_body(request) if method in BODY_METHODS else b""
                call = Call(request, key, _parse(raw, method), lang)
                idem = request.headers.get("idempotency-key")
                if method == "POST" and idem is not None and self.idempotency is not None:
                    stored, replayed = await self.idempotency.run(
                        key.partner, idem, fingerprint(method, request.url.path, raw),
                        lambda: self._stored(handler, call))
                    headers = {"Idempotent-Replayed": "true"} if replayed else None
                    return self._served_ok(Response(stored.body, stored.status, headers=headers,
                                                    media_type=stored.content_type))
                answer = await handler(call)
                return self._served_ok(Response(_json(answer.body), answer.status, headers=answer.headers,
                                                media_type=JSON_TYPE))
            except Problem as problem:
                return self._refuse(problem, lang)
            except Exception as exc:
                self.log.error("partner API %s %s failed: %s: %s", method, request.url.path, type(exc).__name__, exc,
                               exc_info=exc)
                return self._refuse(Problem("internal"), lang)
        return serve

    def _served_ok(self, response: Response) -> Response:
        if self._served is not None:
            self._served.labels(f"{response.status_code // 100}xx").inc()
        return response

    async def _stored(self, handler: Handler, call: Call) -> Stored:
        try:
            answer = await handler(call)
        except Problem as problem:
            return Stored(problem.status, problem.encode(call.lang), PROBLEM_TYPE)
        return Stored(answer.status, _json(answer.body), JSON_TYPE)

    async def _authenticate(self, request: Request) -> ApiKey:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        partner = request.headers.get("meshd-partner", "")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem("unauthorized", reason="missing")
        if not partner:
            raise Problem("unauthorized", field="Meshd-Partner", reason="missing")
        # Limited before the key is checked, by the key id it names: guessing secrets of a key costs
        # the guesser its rate, not the daemon an argon2id hash per guess.
        parsed = parse_key(token.strip())
        if parsed is not None:
            wait = self.limiter.take(parsed.key_id)
            if wait:
                raise Problem("rate_limited", headers={"Retry-After": self.limiter.retry_after(wait)},
                              seconds=self.limiter.retry_after(wait))
        key = await self.store.authenticate(token.strip(), partner)
        if key is None:
            raise Problem("unauthorized", reason="refused")
        return key

    async def _read_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > self.max_body:
                    raise Problem("body_too_large", limit=self.max_body)
            except ValueError:
                raise Problem("validation", field="Content-Length", reason="number") from None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise Problem("body_too_large", limit=self.max_body)
            chunks.append(chunk)
        raw = b"".join(chunks)
        if raw:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != JSON_TYPE:
                raise Problem("unsupported_media_type", got=content_type or "none")
        return raw


def _parse(raw: bytes, method: str) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem("malformed_json") from None


async def audit_append(audit: Any, kind: str, call: Call, data: dict[str, Any]) -> None:
    """One hash-chained, fsynced audit entry for a write: who (partner, key), what, from where."""
    entry = {"partner": call.partner, "key_id": call.key.key_id, "address": call.address, **data}
    await anyio.to_thread.run_sync(audit.append, kind, entry)

"""The operator's side: partners and keys through the daemon's local admin API (token, loopback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from meshd.httpapi import HTTPError, Request, Response, Route

from .store import StoreError


class AdminRoutes:
    def __init__(self, runtime: Callable[[], Any]):
        self._runtime = runtime

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v1/partners", self.add_partner, admin=True),
            Route("GET", "/v1/partners", self.list_partners, admin=True),
            Route("POST", "/v1/partners/{partner}/keys", self.create_key, admin=True),
            Route("GET", "/v1/partners/{partner}/keys", self.list_keys, admin=True),
            Route("DELETE", "/v1/partners/{partner}/keys/{key_id}", self.revoke_key, admin=True),
        ]

    def _rt(self) -> Any:
        rt = self._runtime()
        if rt is None or rt.store is None:
            raise HTTPError(503, "the partners plugin is not enabled in this region (partners: {enabled: true})")
        return rt

    async def _audit(self, rt: Any, kind: str, data: dict[str, Any]) -> None:
        await anyio.to_thread.run_sync(rt.audit.append, kind, {"partner": data.get("partner"), "key_id": None,
                                                               "address": "operator", **data})

    async def add_partner(self, request: Request) -> Response:
        rt = self._rt()
        body = _body(request)
        try:
            partner = await rt.store.add_partner(str(body.get("name") or ""), body.get("id") or None)
        except StoreError as exc:
            return Response.json({"error": str(exc), "code": exc.code}, 409 if exc.code == "exists" else 400)
        await self._audit(rt, "operator.partner.add", {"partner": partner.id, "name": partner.name})
        return Response.json({"id": partner.id, "name": partner.name, "created": partner.created}, 201)

    async def list_partners(self, request: Request) -> Response:
        rt = self._rt()
        await rt.store.loaded.wait()
        return Response.json({"items": [{"id": p.id, "name": p.name, "created": p.created,
                                         "keys": sum(1 for k in rt.store.keys_of(p.id) if k.revoked is None)}
                                        for p in sorted(rt.store.partners.values(), key=lambda p: p.id)]})

    async def create_key(self, request: Request) -> Response:
        rt = self._rt()
        body = _body(request)
        partner = request.params["partner"]
        try:
            record, key = await rt.store.create_key(partner, str(body.get("role") or "read"))
        except StoreError as exc:
            return Response.json({"error": str(exc), "code": exc.code}, 404 if exc.code == "unknown_partner" else 400)
        await self._audit(rt, "operator.key.create", {"partner": partner, "new_key": record.key_id,
                                                      "role": record.role})
        return Response.json({**record.public(), "key": key}, 201)

    async def list_keys(self, request: Request) -> Response:
        rt = self._rt()
        partner = request.params["partner"]
        await rt.store.loaded.wait()
        if partner not in rt.store.partners:
            return Response.json({"error": f"no partner {partner!r}", "code": "unknown_partner"}, 404)
        return Response.json({"items": [k.public() for k in rt.store.keys_of(partner)]})

    async def revoke_key(self, request: Request) -> Response:
        rt = self._rt()
        partner, key_id = request.params["partner"], request.params["key_id"]
        try:
            record = await rt.store.revoke_key(partner, key_id)
        except StoreError as exc:
            return Response.json({"error": str(exc), "code": exc.code}, 404)
        await self._audit(rt, "operator.key.revoke", {"partner": partner, "revoked_key": key_id})
        return Response.json(record.public())


def _body(request: Request) -> dict[str, Any]:
    body = request.json()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise HTTPError(400, "the body must be a JSON object")
    return body

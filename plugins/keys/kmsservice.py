"""The region-local encrypt/decrypt service on NATS request/reply.

The region's own applications (not other regions) ask their daemon to
encrypt or decrypt without holding keys themselves::

    subject  meshd-kms.<federation>.<region>.<op>    op: encrypt | decrypt | rewrap | blind_index
    request  {"purpose": "service", "context": {"tenant": "acme"}, "plaintext": "<base64>"}
             {"purpose": "service", "context": {...}, "ciphertext": "meshd:v1:..."}   (decrypt, rewrap)
             {"purpose": "service", "value": "<base64>"}                               (blind_index)
    reply    {"ok": true, "ciphertext": "meshd:v1:..."} | {"ok": true, "plaintext": "<base64>"}
             {"ok": true, "index": "<32 hex>"} | {"ok": false, "error": {"code": "...", "message": "..."}}

The subjects are outside ``meshd.<federation>.>`` on purpose: NATS
permissions (``meshd.natsserver.authorization_block``) let only the
region's own user publish or subscribe on ``meshd-kms.<federation>.<region>.>``,
so no other region can ask, or listen to what is asked. Only keyrings listed
in ``keys.service.purposes`` are served, never ``secrets``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from meshd.metrics import Metrics
from meshd.transport import Message, Transport, TransportError

from .errors import KeysError
from .manager import KeyManager
from .settings import ServiceSettings

OPS = ("encrypt", "decrypt", "rewrap", "blind_index")


def service_subject(federation: str, region: str, op: str = "*") -> str:
    return f"meshd-kms.{federation}.{region}.{op}"


class _BadRequest(Exception):
    def __init__(self, code: str, message: str):
        self.code, self.message = code, message
        super().__init__(message)


def _b64(body: dict[str, Any], key: str) -> bytes:
    value = body.get(key)
    if not isinstance(value, str):
        raise _BadRequest("bad_request", f"{key} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _BadRequest("bad_request", f"{key} is not base64") from None


class KmsService:
    """Answers one region's encrypt/decrypt requests from its keyrings."""

    def __init__(self, manager: KeyManager, settings: ServiceSettings, metrics: Metrics,
                 logger: logging.Logger | None = None):
        self.manager = manager
        self.settings = settings
        self.log = logger or logging.getLogger("meshd.keys.service")
        self._requests = metrics.counter("keys_service_requests_total",
                                         "Requests to the region-local key service, by operation and result",
                                         ["op", "result"])

    def handle(self, op: str, data: bytes) -> dict[str, Any]:
        """The reply to one request (never raises)."""
        try:
            if op not in OPS:
                raise _BadRequest("unknown_op", f"unknown operation {op!r} (one of {', '.join(OPS)})")
            try:
                body = json.loads(data)
            except ValueError:
                raise _BadRequest("bad_request", "the request is not JSON") from None
            if not isinstance(body, dict):
                raise _BadRequest("bad_request", "the request must be a JSON object")
            purpose = body.get("purpose", self.settings.purposes[0] if self.settings.purposes else None)
            if purpose not in self.settings.purposes:
                raise _BadRequest("purpose_not_served",
                                  f"purpose {purpose!r} is not served here (served: {', '.join(self.settings.purposes)})")
            context = body.get("context") or {}
            ring = self.manager.keyring(purpose)
            if op == "encrypt":
                reply = {"ok": True, "ciphertext": ring.encrypt(_b64(body, "plaintext"), context)}
            elif op == "blind_index":
                reply = {"ok": True, "index": ring.blind_index(_b64(body, "value"))}
            else:
                ciphertext = body.get("ciphertext")
                if op == "decrypt":
                    reply = {"ok": True, "plaintext": base64.b64encode(ring.decrypt(ciphertext, context)).decode()}
                else:
                    reply = {"ok": True, "ciphertext": ring.rewrap(ciphertext, context)}
        except _BadRequest as exc:
            self._requests.labels(op if op in OPS else "unknown", exc.code).inc()
            return {"ok": False, "error": {"code": exc.code, "message": exc.message}}
        except KeysError as exc:
            self._requests.labels(op, exc.code).inc()
            return {"ok": False, "error": {"code": exc.code, "message": str(exc)}}
        except Exception as exc:  # a bug must cost one request, not the subscription
            self.log.error("key service %s failed: %s: %s", op, type(exc).__name__, exc, exc_info=exc)
            self._requests.labels(op, "internal").inc()
            return {"ok": False, "error": {"code": "internal", "message": "internal error (see the daemon log)"}}
        self._requests.labels(op, "ok").inc()
        return reply

    async def serve(self, transport: Transport, federation: str, region: str) -> Any:
        """Subscribe on this region's service subjects; returns the subscription."""
        prefix_len = len(service_subject(federation, region, ""))

        async def on_message(msg: Message) -> None:
            op = msg.subject[prefix_len:]
            if not msg.reply:
                self._requests.labels(op if op in OPS else "unknown", "no_reply_subject").inc()
                return
            reply = self.handle(op, msg.data)
            try:
                await transport.respond(msg, json.dumps(reply).encode())
            except TransportError as exc:
                self.log.warning("key service reply on %s failed: %s", msg.subject, exc)

        return await transport.subscribe(service_subject(federation, region), on_message, queue="meshd-kms")

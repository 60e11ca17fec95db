"""RFC 9457 problem details, titled and explained in the caller's language (``Accept-Language``)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from meshd.i18n import DEFAULT, LANGUAGES, Translator

TYPE_BASE = "https://meshd.dev/problems/"
CONTENT_TYPE = "application/problem+json"

STATUS = {
    "unauthorized": 401, "forbidden": 403, "not_found": 404, "method_not_allowed": 405, "conflict": 409,
    "precondition_failed": 412, "idempotency_conflict": 409, "unknown_region": 422,
    "region_outside_residency": 422, "region_dead": 422, "unknown_plan": 422, "bad_color": 422,
    "body_too_large": 413, "malformed_json": 400, "unsupported_media_type": 415, "rate_limited": 429,
    "validation": 422, "unavailable": 503, "internal": 500,
}
"""Every problem code the API answers with, and its HTTP status."""


class Problem(Exception):
    """An answer that is an error: raised anywhere in a handler, rendered once by the endpoint wrapper."""

    def __init__(self, code: str, *, field: str | None = None, headers: dict[str, str] | None = None,
                 **params: Any):
        super().__init__(code)
        self.code = code
        self.status = STATUS[code]
        self.field = field
        self.headers = headers or {}
        self.params = params

    def body(self, lang: str) -> dict[str, Any]:
        t = translator(lang)
        params = dict(self.params)
        if "reason" in params:  # a reason code: its own translated sentence, with the same parameters
            key = f"partners.reason.{params['reason']}"
            text = t(key, **params)
            params["reason"] = params["reason"] if text == key else text
        out: dict[str, Any] = {
            "type": TYPE_BASE + self.code,
            "title": t(f"partners.problem.{self.code}.title"),
            "status": self.status,
            "detail": t(f"partners.problem.{self.code}.detail", field=self.field or "", **params),
        }
        if self.field is not None:
            out["field"] = self.field
        return out

    def encode(self, lang: str) -> bytes:
        return json.dumps(self.body(lang), ensure_ascii=False).encode()


@cache
def translator(lang: str) -> Translator:
    return Translator(lang)


def negotiate(accept_language: str | None) -> str:
    """The best of en, fr, es, de, ar for an ``Accept-Language`` header (q-values honoured)."""
    if not accept_language:
        return DEFAULT
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        code = tag.strip().split("-")[0].lower()
        if code in LANGUAGES and q > 0:
            ranked.append((-q, i, code))
    return min(ranked)[2] if ranked else DEFAULT

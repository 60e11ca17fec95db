"""The alerts plugin's local HTTP routes (the CLI talks to these).

======  ================================  =====  ==========================================
method  path                              admin  does
======  ================================  =====  ==========================================
GET     /v1/alerts                               alerts this daemon holds, outbox summary
POST    /v1/alerts                        yes    raise or resolve alerts (scripts, tests)
POST    /v1/alerts/test/{receiver}        yes    send a test notification now
GET     /v1/silences                             silences (``?all=1``: expired ones too)
POST    /v1/silences                      yes    add a silence
POST    /v1/silences/{id}/expire          yes    expire a silence
======  ================================  =====  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from meshd.durations import parse_duration
from meshd.httpapi import HTTPError, Request, Response, Route

from .runtime import AlertsRuntime, alert_from_json
from .silences import SilenceError

if TYPE_CHECKING:
    from meshd.daemon import Daemon

MAX_ALERTS_PER_POST = 1000


def routes(daemon: Daemon, runtime: Callable[[], AlertsRuntime | None]) -> list[Route]:
    def rt() -> AlertsRuntime:
        got = runtime()
        if got is None:
            raise HTTPError(503, "the alerts plugin has not started yet")
        return got

    async def list_alerts(_request: Request) -> Response:
        r = rt()
        recent = await r.outbox.run(r.outbox.sync.recent, 20)
        return Response.json({"region": daemon.region, "alerts": r.alerts_json(), "status": await r.status(),
                              "outbox_recent": [row.to_json() for row in recent]})

    async def post_alerts(request: Request) -> Response:
        r = rt()
        body = request.json()
        items = body.get("alerts") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise HTTPError(400, "body: expected {\"alerts\": [{\"labels\": {...}, ...}]}")
        if len(items) > MAX_ALERTS_PER_POST:
            raise HTTPError(400, f"alerts: at most {MAX_ALERTS_PER_POST} per request")
        rejected: list[dict[str, Any]] = []
        accepted = 0
        for i, item in enumerate(items):
            try:
                alert = alert_from_json(item)
            except ValueError as exc:
                r.metrics.rejected.labels("bad_request").inc()
                rejected.append({"index": i, "error": f"alerts[{i}].{exc}"})
                continue
            await daemon.hooks.alert(daemon, alert)
            accepted += 1
        return Response.json({"accepted": accepted, "rejected": rejected}, 200 if not rejected else 400)

    async def test_receiver(request: Request) -> Response:
        r = rt()
        name = request.params["receiver"]
        if name not in r.tree.receivers:
            return Response.json({"error": f"unknown receiver {name!r}", "known": sorted(r.tree.receivers)}, 404)
        results = await r.test_receiver(name)
        ok = all(item["ok"] for item in results)
        return Response.json({"receiver": name, "ok": ok, "results": results})

    async def list_silences(request: Request) -> Response:
        include = request.query.get("all", ["0"])[0] in ("1", "true", "yes")
        return Response.json({"silences": rt().silences_json(include)})

    async def add_silence(request: Request) -> Response:
        r = rt()
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "body: expected an object with matchers, duration and comment")
        matchers = body.get("matchers")
        if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
            raise HTTPError(400, "matchers: expected a list of strings such as 'alertname=\"ProbeFailing\"'")
        try:
            duration = parse_duration(body.get("duration", "1h"))
        except ValueError as exc:
            raise HTTPError(400, f"duration: {exc}") from None
        starts_at = body.get("starts_at")
        if starts_at is not None and (isinstance(starts_at, bool) or not isinstance(starts_at, (int, float))):
            raise HTTPError(400, "starts_at: epoch seconds")
        try:
            silence = await r.add_silence(matchers, duration, str(body.get("comment", "")),
                                          str(body.get("created_by", "")), starts_at)
        except SilenceError as exc:
            raise HTTPError(400, str(exc)) from None
        return Response.json({"silence": silence.to_json()}, 201)

    async def expire_silence(request: Request) -> Response:
        silence = await rt().expire_silence(request.params["id"])
        if silence is None:
            return Response.json({"error": f"no silence {request.params['id']!r}"}, 404)
        return Response.json({"silence": silence.to_json()})

    return [
        Route("GET", "/v1/alerts", list_alerts),
        Route("POST", "/v1/alerts", post_alerts, admin=True),
        Route("POST", "/v1/alerts/test/{receiver}", test_receiver, admin=True),
        Route("GET", "/v1/silences", list_silences),
        Route("POST", "/v1/silences", add_silence, admin=True),
        Route("POST", "/v1/silences/{id}/expire", expire_silence, admin=True),
    ]

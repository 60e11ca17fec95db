"""Every bad input gets its problem+json (in the caller's language) and changes nothing."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

GOOD = {"name": "Shop", "region": "eu-west-1", "plan": "starter"}


def problem(r: httpx.Response, code: str, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, (code, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"https://meshd.dev/problems/{code}", body
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


async def _count(api: httpx.AsyncClient) -> int:
    return len((await api.get("/v1/tenants")).json()["items"])


@pytest.mark.parametrize("body, code, status, field", [
    ({**GOOD, "region": "mars-1"}, "unknown_region", 422, "region"),
    ({**GOOD, "residency": "US"}, "region_outside_residency", 422, "region"),
    ({**GOOD, "region": "us-east-1"}, "region_dead", 422, "region"),
    ({**GOOD, "plan": "platinum"}, "unknown_plan", 422, "plan"),
    ({**GOOD, "branding": {"primary_color": "red", "company_name": "X"}}, "bad_color", 422,
     "branding.primary_color"),
    ({**GOOD, "branding": {"primary_color": "#12345", "company_name": "X"}}, "bad_color", 422,
     "branding.primary_color"),
    ({**GOOD, "branding": {"primary_color": "#123456", "company_name": "X", "logo_url": "http://x"}}, "validation",
     422, "branding.logo_url"),
    ({"region": "eu-west-1", "plan": "starter"}, "validation", 422, "name"),
    ({**GOOD, "name": 7}, "validation", 422, "name"),
    ({**GOOD, "colour": "x"}, "validation", 422, "colour"),
    ([GOOD], "validation", 422, "body"),
])
async def test_bad_create_bodies(federation, body, code, status, field) -> None:
    async with federation.client() as api:
        before = await _count(api)
        problem(await api.post("/v1/tenants", json=body), code, status, field)
        assert await _count(api) == before


async def test_bad_transport_of_the_body(federation) -> None:
    async with federation.client() as api:
        problem(await api.post("/v1/tenants", content=b'{"name": "x",', headers={"Content-Type": "application/json"}),
                "malformed_json", 400)
        problem(await api.post("/v1/tenants", content=b"name=x", headers={"Content-Type": "text/plain"}),
                "unsupported_media_type", 415)
        big = b'{"name": "' + b"x" * (64 * 1024) + b'"}'
        problem(await api.post("/v1/tenants", content=big, headers={"Content-Type": "application/json"}),
                "body_too_large", 413)

        async def chunked():  # no Content-Length: the limit holds on the stream too
            for _ in range(70):
                yield b"x" * 1024
        problem(await api.post("/v1/tenants", content=chunked(), headers={"Content-Type": "application/json"}),
                "body_too_large", 413)
        assert await _count(api) == 0


async def test_bad_changes_leave_the_tenant_unchanged(federation) -> None:
    async with federation.client() as api:
        tenant = (await api.post("/v1/tenants", json=GOOD)).json()
        tid = tenant["id"]
        problem(await api.patch(f"/v1/tenants/{tid}", json={"plan": "gold"}), "unknown_plan", 422, "plan")
        problem(await api.patch(f"/v1/tenants/{tid}", json={"plan": "pro", "status": "active"}), "validation", 422,
                "status")
        problem(await api.put(f"/v1/tenants/{tid}/branding", json={"primary_color": "#GGGGGG", "company_name": "X"}),
                "bad_color", 422, "primary_color")
        problem(await api.patch(f"/v1/tenants/{tid}", json={"plan": "pro"}, headers={"If-Match": "soon"}),
                "validation", 422, "If-Match")
        problem(await api.get("/v1/tenants", params={"status": "sleeping"}), "validation", 422, "status")
        problem(await api.get("/v1/tenants", params={"limit": "0"}), "validation", 422, "limit")
        problem(await api.get("/v1/tenants", params={"cursor": "____"}), "validation", 422, "cursor")
        problem(await api.get("/v1/nothing"), "not_found", 404)
        problem(await api.put("/v1/tenants"), "method_not_allowed", 405)
        assert (await api.get(f"/v1/tenants/{tid}")).json() == tenant


@pytest.mark.parametrize("lang, title", [
    ("fr-FR,fr;q=0.9", "Région inconnue"), ("es", "Región desconocida"), ("de;q=1, en;q=0.5", "Unbekannte Region"),
    ("ar", "منطقة غير معروفة"), ("ja, en;q=0.1", "Unknown region"), ("", "Unknown region"),
])
async def test_problems_speak_the_callers_language(federation, lang, title) -> None:
    async with federation.client(**{"Accept-Language": lang}) as api:
        body = problem(await api.post("/v1/tenants", json={**GOOD, "region": "mars-1"}), "unknown_region", 422)
        assert body["title"] == title
        assert "mars-1" in body["detail"]


async def test_validation_details_are_translated_too(federation) -> None:
    async with federation.client(**{"Accept-Language": "fr"}) as api:
        body = problem(await api.post("/v1/tenants", json={"region": "eu-west-1", "plan": "starter"}),
                       "validation", 422, "name")
        assert body["detail"] == "name : obligatoire"
        body = problem(await api.get("/v1/tenants", params={"limit": "9999"}), "validation", 422, "limit")
        assert body["detail"] == "limit : un entier de 1 à 500"

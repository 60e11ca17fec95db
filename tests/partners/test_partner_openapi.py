"""Every answer of the partner API matches the schema the OpenAPI document gives for it (the SDKs' contract)."""

from __future__ import annotations

import httpx
import pytest
from jsonschema import Draft202012Validator

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


def _operation(doc: dict, method: str, path: str) -> dict:
    for template, ops in doc["paths"].items():
        parts, actual = template.strip("/").split("/"), path.split("?")[0].strip("/").split("/")
        if len(parts) == len(actual) and all(p == a or p.startswith("{") for p, a in zip(parts, actual)):
            if method.lower() in ops:
                return ops[method.lower()]
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def check(doc: dict, r: httpx.Response) -> None:
    op = _operation(doc, r.request.method, r.request.url.path)
    answer = op["responses"].get(str(r.status_code))
    assert answer is not None, f"{op['operationId']} answered {r.status_code}, which the document does not list"
    content_type = r.headers["content-type"].split(";")[0]
    schema = answer["content"][content_type]["schema"]
    errors = list(Draft202012Validator({**schema, "components": doc["components"]}).iter_errors(r.json()))
    assert not errors, f"{op['operationId']} {r.status_code}: {[e.message for e in errors]}"


async def test_answers_match_the_document(federation) -> None:
    async with httpx.AsyncClient(base_url=federation.url("eu-west-1")) as raw:
        doc = (await raw.get("/v1/openapi.json")).json()
    Draft202012Validator.check_schema({"components": doc["components"]})
    answers: list[httpx.Response] = []
    async with federation.client() as api:
        r = await api.post("/v1/tenants", json={"name": "Bistro", "region": "eu-west-1", "plan": "starter",
                                                "branding": {"primary_color": "#112233", "company_name": "B"}},
                           headers={"Idempotency-Key": "k1"})
        tid = r.json()["id"]
        answers += [r, await api.get("/v1/tenants"), await api.get(f"/v1/tenants/{tid}"),
                    await api.patch(f"/v1/tenants/{tid}", json={"plan": "pro"}),
                    await api.put(f"/v1/tenants/{tid}/branding", json={"primary_color": "#000000",
                                                                        "company_name": "C"}),
                    await api.post("/v1/licenses", json={"tenant": tid, "plan": "pro", "features": ["sso"]}),
                    await api.get("/v1/metrics"), await api.get("/v1/keys")]
        created = await api.post("/v1/keys", json={"role": "read"})
        answers += [created, await api.delete(f"/v1/keys/{created.json()['key_id']}"),
                    await api.post(f"/v1/tenants/{tid}/suspend"), await api.delete(f"/v1/tenants/{tid}")]
        # problems, one of each kind the routes answer with
        answers += [await api.post("/v1/tenants", json={"name": "x", "region": "mars-1", "plan": "pro"}),
                    await api.post("/v1/tenants", content=b"{", headers={"Content-Type": "application/json"}),
                    await api.post("/v1/tenants", content=b"x", headers={"Content-Type": "text/plain"}),
                    await api.get("/v1/tenants/t_aaaaaaaaaaaaaaaa"),
                    await api.patch("/v1/tenants/t_aaaaaaaaaaaaaaaa", json={"plan": "pro"}),
                    await api.post("/v1/tenants", json={"name": "x", "region": "eu-west-1", "plan": "pro"},
                                   headers={"Idempotency-Key": "k1"})]
    async with federation.client(role="read") as api:
        answers.append(await api.post("/v1/tenants", json={"name": "x", "region": "eu-west-1", "plan": "pro"}))
    async with httpx.AsyncClient(base_url=federation.url("eu-west-1")) as raw:
        answers.append(await raw.get("/v1/tenants"))
    for r in answers:
        check(doc, r)
    assert {r.status_code for r in answers} >= {200, 201, 400, 401, 403, 404, 409, 415, 422}

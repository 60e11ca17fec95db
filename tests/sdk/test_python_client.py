"""The Python SDK against a real HTTP server on a local socket: retries, idempotency, pagination, errors."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest
from meshd_partner import (
    AsyncClient,
    Branding,
    Client,
    PartnerAPIError,
    PartnerConnectionError,
    RetryPolicy,
)

from .scripted_server import Reply, ScriptedServer, problem, tenant_json

KEY = "mpk_abcdefghijkl_" + "x" * 32
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=5.0)


def client(server: ScriptedServer, **kwargs: object) -> Client:
    return Client(KEY, "acme", server.url, retry=kwargs.pop("retry", FAST), **kwargs)  # type: ignore[arg-type]


def test_a_create_retried_after_429_sends_the_same_idempotency_key_and_waits_retry_after(api_server: ScriptedServer
                                                                                          ) -> None:
    api_server.script("POST", "/v1/tenants",
                      problem(429, "rate_limited", "Too many requests", headers={"Retry-After": "1"}),
                      Reply(201, tenant_json()))
    started = time.monotonic()
    with client(api_server) as api:
        tenant = api.deploy_tenant(name="Bistro", region="eu-west-1", plan="pro",
                                   branding=Branding("#112233", "Bistro SA"))
    elapsed = time.monotonic() - started
    sent = api_server.requests("POST", "/v1/tenants")
    assert tenant.id == "t_aaaaaaaaaaaaaaaa" and tenant.home == "eu-west-1" and tenant.revision == 1
    assert len(sent) == 2
    keys = {s.headers["idempotency-key"] for s in sent}
    assert len(keys) == 1 and uuid.UUID(keys.pop()).version == 4
    assert sent[0].body == sent[1].body == {"name": "Bistro", "region": "eu-west-1", "plan": "pro",
                                            "branding": {"primary_color": "#112233", "company_name": "Bistro SA"}}
    assert elapsed >= 1.0, "the client did not wait the Retry-After the server asked for"


def test_two_creates_never_share_an_idempotency_key(api_server: ScriptedServer) -> None:
    api_server.script("POST", "/v1/tenants", Reply(201, tenant_json()))
    with client(api_server) as api:
        api.deploy_tenant(name="A", region="eu-west-1", plan="pro")
        api.deploy_tenant(name="B", region="eu-west-1", plan="pro")
    keys = [s.headers["idempotency-key"] for s in api_server.requests("POST", "/v1/tenants")]
    assert len(keys) == 2 and keys[0] != keys[1]


def test_licenses_are_creates_with_their_own_idempotency_key(api_server: ScriptedServer) -> None:
    api_server.script("POST", "/v1/licenses", Reply(503), Reply(201, {"token": "a.b.c",
                                                                        "expires_at": "2027-12-07T00:00:00Z"}))
    with client(api_server) as api:
        lic = api.issue_license("t_aaaaaaaaaaaaaaaa", "pro", ["sso"])
    sent = api_server.requests("POST", "/v1/licenses")
    assert lic.token == "a.b.c" and lic.expires_at.year == 2027
    assert len(sent) == 2 and sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"]
    assert sent[0].body == {"tenant": "t_aaaaaaaaaaaaaaaa", "plan": "pro", "features": ["sso"]}


def test_retries_are_bounded_and_the_last_error_is_raised(api_server: ScriptedServer) -> None:
    api_server.script("GET", "/v1/metrics", problem(503, "unavailable", "Service unavailable", "registry down"))
    with client(api_server, retry=RetryPolicy(attempts=3, base_delay=0.01)) as api, pytest.raises(PartnerAPIError) as err:
        api.get_metrics()
    assert err.value.status == 503 and err.value.detail == "registry down"
    assert len(api_server.requests("GET", "/v1/metrics")) == 3


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_without_a_problem_body_are_retried(api_server: ScriptedServer, status: int) -> None:
    api_server.script("GET", "/v1/tenants/t_b", Reply(status, b"<html>bad gateway</html>", content_type="text/html"),
                      Reply(200, tenant_json("t_b")))
    with client(api_server) as api:
        assert api.get_tenant("t_b").id == "t_b"
    assert len(api_server.requests("GET", "/v1/tenants/t_b")) == 2


def test_a_retry_after_longer_than_the_policy_allows_is_raised_not_waited(api_server: ScriptedServer) -> None:
    api_server.script("GET", "/v1/metrics", problem(429, "rate_limited", "Too many requests",
                                                    headers={"Retry-After": "3600"}))
    started = time.monotonic()
    with client(api_server) as api, pytest.raises(PartnerAPIError) as err:
        api.get_metrics()
    assert time.monotonic() - started < 2
    assert err.value.code == "rate_limited" and err.value.retry_after == 3600
    assert len(api_server.requests("GET", "/v1/metrics")) == 1


def test_client_errors_are_not_retried_and_carry_the_problem(api_server: ScriptedServer) -> None:
    api_server.script("PUT", "/v1/tenants/t_x/branding",
                      problem(422, "bad_color", "Bad colour", "#12345 is not #RRGGBB", "primary_color"))
    with client(api_server) as api, pytest.raises(PartnerAPIError) as err:
        api.set_branding("t_x", "#12345", "Bistro")
    e = err.value
    assert (e.status, e.code, e.title, e.detail, e.field) == (422, "bad_color", "Bad colour", "#12345 is not #RRGGBB",
                                                              "primary_color")
    assert "primary_color" in str(e)
    assert len(api_server.requests("PUT", "/v1/tenants/t_x/branding")) == 1


def test_list_tenants_follows_next_cursor_through_every_page(api_server: ScriptedServer) -> None:
    ids = [f"t_{i:016d}" for i in range(7)]

    def page(seen):  # type: ignore[no-untyped-def]
        start = int(seen.query.get("cursor", "0"))
        end = start + 3
        return Reply(200, {"items": [tenant_json(i) for i in ids[start:end]],
                           "next_cursor": str(end) if end < len(ids) else None})

    api_server.script("GET", "/v1/tenants", page)
    with client(api_server) as api:
        got = [t.id for t in api.list_tenants(status="active", page_size=3)]
    assert got == ids
    sent = api_server.requests("GET", "/v1/tenants")
    assert [s.query.get("cursor") for s in sent] == [None, "3", "6"]
    assert all(s.query["status"] == "active" and s.query["limit"] == "3" for s in sent)


def test_every_request_names_the_partner_and_its_key(api_server: ScriptedServer) -> None:
    api_server.script("PATCH", "/v1/tenants/t_p", Reply(200, tenant_json("t_p", plan="scale", revision=4)))
    with client(api_server, lang="fr") as api:
        tenant = api.change_plan("t_p", "scale", expected_revision=3)
    seen = api_server.requests("PATCH", "/v1/tenants/t_p")[0]
    assert seen.headers["authorization"] == f"Bearer {KEY}" and seen.headers["meshd-partner"] == "acme"
    assert seen.headers["if-match"] == '"3"' and seen.headers["accept-language"] == "fr"
    assert seen.body == {"plan": "scale"} and tenant.plan == "scale" and tenant.revision == 4
    assert KEY not in repr(api) and "x" * 32 not in repr(api)


def test_tenant_ids_are_quoted_into_the_path(api_server: ScriptedServer) -> None:
    api_server.script("POST", "/v1/tenants/a%2Fb/suspend", Reply(200, tenant_json("a/b", status="suspended")))
    with client(api_server) as api:
        assert api.suspend_tenant("a/b").status == "suspended"
    assert len(api_server.requests("POST", "/v1/tenants/a%2Fb/suspend")) == 1


def test_money_in_metrics_is_decimal(api_server: ScriptedServer) -> None:
    api_server.script("GET", "/v1/metrics", Reply(200, b'{"tenants": {"by_status": {"active": 2}, "by_region": {},'
                                                        b' "by_plan": {"pro": 2}}, "usage": null,'
                                                        b' "mrr": {"EUR": 0.10}, "reasons": {"usage": "no meters"}}'))
    with client(api_server) as api:
        metrics = api.get_metrics()
    assert metrics.mrr == {"EUR": Decimal("0.10")} and isinstance(metrics.mrr["EUR"], Decimal)
    assert metrics.tenants.by_status == {"active": 2} and metrics.usage is None
    assert metrics.reasons == {"usage": "no meters"}


def test_delete_answers_the_tombstone_or_nothing(api_server: ScriptedServer) -> None:
    api_server.script("DELETE", "/v1/tenants/t_d", Reply(204))
    api_server.script("DELETE", "/v1/tenants/t_e", Reply(200, tenant_json("t_e", status="deleted")))
    with client(api_server) as api:
        assert api.delete_tenant("t_d") is None
        deleted = api.delete_tenant("t_e")
    assert deleted is not None and deleted.status == "deleted"


def test_an_unreachable_server_raises_a_connection_error_after_the_retries() -> None:
    server = ScriptedServer()
    url = server.url
    server.stop()  # the port is closed: every connection is refused
    with Client(KEY, "acme", url, retry=RetryPolicy(attempts=2, base_delay=0.01)) as api, \
            pytest.raises(PartnerConnectionError) as err:
        api.get_metrics()
    assert "2 attempt(s)" in str(err.value) and KEY not in str(err.value)


@pytest.mark.parametrize("bad", ["", "ftp://x", "localhost:7480"])
def test_a_bad_base_url_is_refused_at_construction(bad: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        Client(KEY, "acme", bad)


async def _async_flow(server: ScriptedServer) -> tuple[list[str], str]:
    async with AsyncClient(KEY, "acme", server.url, retry=FAST) as api:
        tenant = await api.deploy_tenant(name="Bistro", region="eu-west-1", plan="pro")
        ids = [t.id async for t in api.list_tenants()]
    return ids, tenant.id


def test_the_async_client_retries_and_paginates_the_same_way(api_server: ScriptedServer) -> None:
    import asyncio

    api_server.script("POST", "/v1/tenants", Reply(502), Reply(201, tenant_json("t_new")))

    def page(seen):  # type: ignore[no-untyped-def]
        if seen.query.get("cursor") == "next":
            return Reply(200, {"items": [tenant_json("t_2")], "next_cursor": None})
        return Reply(200, {"items": [tenant_json("t_1")], "next_cursor": "next"})

    api_server.script("GET", "/v1/tenants", page)
    ids, created = asyncio.run(_async_flow(api_server))
    assert created == "t_new" and ids == ["t_1", "t_2"]
    sent = api_server.requests("POST", "/v1/tenants")
    assert len(sent) == 2 and sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"]


def test_key_management_creates_with_an_idempotency_key_and_shows_the_secret_once(api_server: ScriptedServer) -> None:
    record = {"key_id": "abcdefghijkm", "partner": "acme", "role": "deployer", "created": "2026-12-07T00:00:00Z",
              "revoked": None}
    api_server.script("POST", "/v1/keys", Reply(503), Reply(201, {**record, "key": "mpk_abcdefghijkm_" + "k" * 32}))
    api_server.script("GET", "/v1/keys", Reply(200, {"items": [record]}))
    api_server.script("DELETE", "/v1/keys/abcdefghijkm", Reply(200, {**record, "revoked": "2026-12-07T01:00:00Z"}))
    with client(api_server) as api:
        created = api.create_key("deployer")
        listed = api.list_keys()
        revoked = api.revoke_key("abcdefghijkm")
    sent = api_server.requests("POST", "/v1/keys")
    assert len(sent) == 2 and sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"]
    assert sent[0].body == {"role": "deployer"}
    assert created.key == "mpk_abcdefghijkm_" + "k" * 32 and created.key not in repr(created)
    assert [k.key_id for k in listed] == ["abcdefghijkm"] and listed[0].key is None
    assert revoked.revoked is not None and revoked.revoked.hour == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    from meshd_partner.core import parse_retry_after

    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now) == 0.0  # already past: no wait, not negative
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_is_full_jitter_under_a_growing_cap() -> None:
    import random

    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, rng=random.Random(7))
    for attempt, cap in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)):
        delays = [policy.backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays) and max(delays) > cap * 0.8

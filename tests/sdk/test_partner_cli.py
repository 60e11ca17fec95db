"""`meshd-partner` against a real HTTP server on a local socket: credentials, output, exit codes, languages."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import string
import subprocess
import sys
from pathlib import Path

import pytest
from meshd_partner.cli import main
from meshd_partner.i18n import LANGUAGES, catalog

from .scripted_server import Reply, ScriptedServer, problem, tenant_json

KEY = "mpk_abcdefghijkl_" + "s" * 32


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("LANG", "C.UTF-8")
    return tmp_path / "config"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def logged_in(server: ScriptedServer) -> None:
    assert run("auth", KEY, "acme", "--url", server.url)[0] == 0


def test_auth_stores_the_key_readable_by_its_owner_only(config_home: Path) -> None:
    code, out, _ = run("auth", KEY, "acme", "--url", "https://partners.example.com/")
    path = config_home / "meshd-partner" / "credentials.json"
    assert code == 0 and str(path) in out and KEY not in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"api_key": KEY, "partner_id": "acme", "url": "https://partners.example.com"}


@pytest.mark.parametrize("argv", [("auth", "not-a-key", "acme"), ("auth", KEY, "acme", "--url", "partners:7480")])
def test_auth_refuses_bad_input_with_exit_2_and_writes_nothing(config_home: Path, argv: tuple[str, ...]) -> None:
    code, _, err = run(*argv)
    assert code == 2 and ("API_KEY" in err or "--url" in err)
    assert not (config_home / "meshd-partner" / "credentials.json").exists()


def test_a_command_without_credentials_exits_2_naming_the_file(config_home: Path) -> None:
    code, _, err = run("tenants")
    assert code == 2 and "credentials.json" in err and "meshd-partner auth" in err


def test_deploy_with_a_colour_sends_a_brand_named_after_the_tenant(config_home: Path, api_server: ScriptedServer) -> None:
    api_server.script("POST", "/v1/tenants", Reply(201, tenant_json("t_new", name="Bistro")))
    logged_in(api_server)
    code, out, _ = run("deploy", "Bistro", "eu-west-1", "pro", "--colour", "#A1B2C3", "--json")
    assert code == 0 and json.loads(out)["id"] == "t_new"
    sent = api_server.requests("POST", "/v1/tenants")[0]
    assert sent.body["branding"] == {"primary_color": "#A1B2C3", "company_name": "Bistro"}
    assert sent.headers["meshd-partner"] == "acme" and sent.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("argv", [("branding", "t_x", "red", "Bistro"), ("deploy", "B", "eu-west-1", "pro", "--colour", "#12"),
                                  ("deploy", "B", "eu-west-1", "pro", "--company", "Bistro SA"),
                                  ("license", "t_x", "pro", "--days", "0")])
def test_bad_arguments_exit_2_before_any_request(config_home: Path, api_server: ScriptedServer,
                                                 argv: tuple[str, ...]) -> None:
    logged_in(api_server)
    code, _, err = run(*argv)
    assert code == 2 and err.startswith("error:")
    assert api_server.seen == []


def test_the_servers_problem_title_is_shown_in_the_callers_language(config_home: Path, api_server: ScriptedServer) -> None:
    api_server.script("POST", "/v1/tenants", problem(422, "unknown_region", "Région inconnue", "mars-1 n'existe pas",
                                                     "region"))
    logged_in(api_server)
    code, _, err = run("deploy", "Bistro", "mars-1", "pro", "--lang", "fr")
    assert code == 2
    assert "l'API partenaire a répondu 422 : Région inconnue" in err and "mars-1 n'existe pas" in err and "region" in err
    assert api_server.requests("POST", "/v1/tenants")[0].headers["accept-language"] == "fr"


def test_a_refusal_that_is_not_about_the_input_exits_1(config_home: Path, api_server: ScriptedServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    api_server.script("PUT", "/v1/tenants/t_gone/branding", problem(404, "not_found", "Nicht gefunden"))
    logged_in(api_server)
    code, out, err = run("branding", "t_gone", "#000000", "Bistro", "--json")
    assert code == 1 and "Partner-API antwortete 404: Nicht gefunden" in err
    assert json.loads(out)["error"]["type"] == "https://meshd.dev/problems/not_found"


def test_tenants_lists_every_page_as_a_table(config_home: Path, api_server: ScriptedServer) -> None:
    def page(seen):  # type: ignore[no-untyped-def]
        if seen.query.get("cursor"):
            return Reply(200, {"items": [tenant_json("t_2", name="Café", status="suspended")], "next_cursor": None})
        return Reply(200, {"items": [tenant_json("t_1")], "next_cursor": "c1"})

    api_server.script("GET", "/v1/tenants", page)
    logged_in(api_server)
    code, out, _ = run("tenants", "--status", "active")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "NAME", "PLAN", "REGION", "RESIDENCY", "STATUS"]
    assert lines[1].split()[0] == "t_1" and lines[2].split()[:2] == ["t_2", "Café"] and lines[3] == "2 tenant(s)."
    assert all(s.query["status"] == "active" for s in api_server.requests("GET", "/v1/tenants"))


def test_metrics_says_why_a_figure_is_missing(config_home: Path, api_server: ScriptedServer) -> None:
    api_server.script("GET", "/v1/metrics", Reply(200, {"tenants": {"by_status": {"active": 3}, "by_region": {"eu-west-1": 3},
                                                                    "by_plan": {"pro": 3}},
                                                        "usage": None, "mrr": {"EUR": "120.50"},
                                                        "reasons": {"usage": "metering is not configured"}}))
    logged_in(api_server)
    code, out, _ = run("metrics")
    assert code == 0 and "Tenants by status: active 3" in out
    assert "Usage: not available (metering is not configured)" in out and "EUR 120.50" in out


def test_license_prints_the_token(config_home: Path, api_server: ScriptedServer) -> None:
    api_server.script("POST", "/v1/licenses", Reply(201, {"token": "h.p.s", "expires_at": "2027-01-01T00:00:00Z"}))
    logged_in(api_server)
    code, out, _ = run("license", "t_1", "pro", "--feature", "sso", "--feature", "audit", "--days", "30")
    assert code == 0 and out.splitlines()[-1] == "h.p.s" and "2027-01-01T00:00:00Z" in out
    assert api_server.requests("POST", "/v1/licenses")[0].body == {"tenant": "t_1", "plan": "pro",
                                                                  "features": ["sso", "audit"], "expires_in_days": 30}


def test_an_unreachable_api_exits_1(config_home: Path) -> None:
    server = ScriptedServer()
    url = server.url
    server.stop()
    assert run("auth", KEY, "acme", "--url", url)[0] == 0
    code, _, err = run("metrics")
    assert code == 1 and "cannot reach the partner API" in err and KEY not in err


def test_the_console_script_runs_in_arabic(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "meshd-partner"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "LANG": "ar_EG.UTF-8"}
    done = subprocess.run([str(script), "tenants"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "لا توجد بيانات اعتماد صالحة" in done.stderr


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_every_message_is_translated_with_the_same_placeholders(lang: str) -> None:
    en, other = catalog("en"), catalog(lang)
    assert set(other) == set(en)
    assert [k for k in en if _placeholders(en[k]) != _placeholders(other[k])] == []
    # A message with words of its own must not be the English one; "{what}: {value}" has none.
    copies = [k for k in en if en[k] == other[k] and len(re.findall(r"[a-z]{3,}", re.sub(r"\{\w+\}", "", en[k]))) > 1]
    assert copies == [], f"{lang}: English left untranslated in {copies}"


def test_show_plan_suspend_and_delete(config_home: Path, api_server: ScriptedServer) -> None:
    api_server.script("GET", "/v1/tenants/t_1", Reply(200, tenant_json("t_1")))
    api_server.script("PATCH", "/v1/tenants/t_1", Reply(200, tenant_json("t_1", plan="scale", revision=2)))
    api_server.script("POST", "/v1/tenants/t_1/suspend", Reply(200, tenant_json("t_1", status="suspended", revision=3)))
    api_server.script("DELETE", "/v1/tenants/t_1", Reply(200, tenant_json("t_1", status="deleted", revision=4)))
    logged_in(api_server)
    code, out, _ = run("show", "t_1")
    assert code == 0 and out.split()[:2] == ["t_1", "Bistro"] and "revision 1" in out
    code, out, _ = run("plan", "t_1", "scale", "--revision", "1", "--json")
    assert code == 0 and json.loads(out)["plan"] == "scale"
    assert api_server.requests("PATCH", "/v1/tenants/t_1")[0].headers["if-match"] == '"1"'
    code, out, _ = run("suspend", "t_1")
    assert code == 0 and "suspended" in out
    code, _, err = run("delete", "t_1")
    assert code == 2 and "--yes" in err and api_server.requests("DELETE", "/v1/tenants/t_1") == []
    code, out, _ = run("delete", "t_1", "--yes", "--json")
    assert code == 0 and json.loads(out)["status"] == "deleted"


def test_auth_refuses_a_ca_file_that_is_not_a_certificate(config_home: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    for ca in (bogus, tmp_path / "missing.pem"):
        code, _, err = run("auth", KEY, "acme", "--url", "https://partners.example.com", "--ca", str(ca))
        assert code == 2 and str(ca) in err
    assert not (config_home / "meshd-partner" / "credentials.json").exists()

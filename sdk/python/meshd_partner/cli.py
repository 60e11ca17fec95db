"""`meshd-partner`: the partner API from a shell.

Exit codes: 0 done, 1 failed (the API refused or could not be reached), 2 bad input
(arguments, missing credentials, or a request the API rejected as invalid).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import ssl
import sys
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from .client import Client
from .core import looks_like_api_key
from .credentials import DEFAULT_URL, Credentials, CredentialsError, credentials_path
from .errors import PartnerAPIError, PartnerConnectionError
from .i18n import LANGUAGES, Messages, detect_language
from .models import Branding, Metrics, Tenant

OK, FAILED, BAD_INPUT = 0, 1, 2
COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
# Problems about what the caller sent: the same exit code as a bad argument.
INPUT_STATUSES = frozenset({400, 413, 415, 422})


class BadInput(Exception):
    """An argument the command refuses before calling the API; the message says which and why."""


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return str(value)  # money keeps its exact digits
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dump(value: Any, out: TextIO) -> None:
    json.dump(_plain(value), out, indent=2, ensure_ascii=False)
    out.write("\n")


def build_parser(m: Messages) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=m("help.json"))
    common.add_argument("--lang", choices=LANGUAGES, default=argparse.SUPPRESS, help=m("help.lang"))
    parser = argparse.ArgumentParser(prog="meshd-partner", description=m("help.description"), parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    auth = commands.add_parser("auth", parents=[common], help=m("help.auth"), description=m("help.auth"))
    auth.add_argument("api_key", metavar="API_KEY", help=m("arg.api_key"))
    auth.add_argument("partner_id", metavar="PARTNER_ID", help=m("arg.partner_id"))
    auth.add_argument("--url", default=DEFAULT_URL, help=m("help.url", default=DEFAULT_URL))
    auth.add_argument("--ca", metavar="FILE", help=m("help.ca"))

    deploy = commands.add_parser("deploy", parents=[common], help=m("help.deploy"), description=m("help.deploy"))
    deploy.add_argument("name", metavar="NAME", help=m("arg.name"))
    deploy.add_argument("region", metavar="REGION", help=m("arg.region"))
    deploy.add_argument("plan", metavar="PLAN", help=m("arg.plan"))
    deploy.add_argument("--colour", "--color", dest="colour", help=m("help.colour"))
    deploy.add_argument("--company", help=m("help.company"))
    deploy.add_argument("--logo", help=m("help.logo"))

    lic = commands.add_parser("license", parents=[common], help=m("help.license"), description=m("help.license"))
    lic.add_argument("tenant", metavar="TENANT", help=m("arg.tenant"))
    lic.add_argument("plan", metavar="PLAN", help=m("arg.plan"))
    lic.add_argument("--feature", action="append", dest="features", help=m("help.feature"))
    lic.add_argument("--days", type=int, help=m("help.days"))

    brand = commands.add_parser("branding", parents=[common], help=m("help.branding"), description=m("help.branding"))
    brand.add_argument("tenant", metavar="TENANT", help=m("arg.tenant"))
    brand.add_argument("colour", metavar="COLOUR", help=m("arg.colour"))
    brand.add_argument("company", metavar="NAME", help=m("arg.company"))
    brand.add_argument("--logo", help=m("help.logo"))

    tenants = commands.add_parser("tenants", parents=[common], help=m("help.tenants"), description=m("help.tenants"))
    tenants.add_argument("--status", choices=("provisioning", "active", "suspended", "deleted"), help=m("help.status"))

    show = commands.add_parser("show", parents=[common], help=m("help.show"), description=m("help.show"))
    show.add_argument("tenant", metavar="TENANT", help=m("arg.tenant"))

    plan = commands.add_parser("plan", parents=[common], help=m("help.plan"), description=m("help.plan"))
    plan.add_argument("tenant", metavar="TENANT", help=m("arg.tenant"))
    plan.add_argument("plan", metavar="PLAN", help=m("arg.plan"))
    plan.add_argument("--revision", type=int, help=m("help.revision"))

    suspend = commands.add_parser("suspend", parents=[common], help=m("help.suspend"), description=m("help.suspend"))
    suspend.add_argument("tenant", metavar="TENANT", help=m("arg.tenant"))

    delete = commands.add_parser("delete", parents=[common], help=m("help.delete"), description=m("help.delete"))
    delete.add_argument("tenant", metavar="TENANT", help=m("arg.tenant"))
    delete.add_argument("--yes", action="store_true", help=m("help.yes"))

    commands.add_parser("metrics", parents=[common], help=m("help.metrics"), description=m("help.metrics"))
    return parser


def _check_colour(m: Messages, colour: str) -> None:
    if not COLOUR.match(colour):
        raise BadInput(m("input.bad_colour", colour=colour))


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


def _print_metrics(m: Messages, metrics: Metrics, out: TextIO) -> None:
    print(m("metrics.by_status", counts=_counts(metrics.tenants.by_status)), file=out)
    print(m("metrics.by_region", counts=_counts(metrics.tenants.by_region)), file=out)
    print(m("metrics.by_plan", counts=_counts(metrics.tenants.by_plan)), file=out)
    for name, value in (("usage", metrics.usage), ("mrr", metrics.mrr)):
        label = m(f"metrics.{name}")
        if value is None:
            print(m("metrics.unavailable", what=label, reason=metrics.reasons.get(name, "-")), file=out)
        else:
            shown = ", ".join(f"{k} {json.dumps(_plain(v), ensure_ascii=False) if isinstance(v, dict | list) else v}"
                              for k, v in sorted(value.items()))
            print(m("metrics.value", what=label, value=shown or "-"), file=out)


def _run(args: argparse.Namespace, m: Messages, lang: str, out: TextIO) -> int:
    as_json = getattr(args, "json", False)
    path = credentials_path()
    if args.command == "auth":
        if not looks_like_api_key(args.api_key):
            raise BadInput(m("input.bad_key"))
        if not args.url.startswith(("http://", "https://")):
            raise BadInput(m("input.bad_url", url=args.url))
        ca_file = None
        if args.ca is not None:
            ca = Path(args.ca).expanduser().resolve()
            try:
                ssl.create_default_context(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                raise BadInput(m("input.bad_ca", path=ca, error=exc)) from None
            ca_file = str(ca)
        Credentials(args.api_key, args.partner_id, args.url.rstrip("/"), ca_file).save(path)
        if as_json:
            _dump({"partner_id": args.partner_id, "url": args.url.rstrip("/"), "credentials": str(path)}, out)
        else:
            print(m("auth.saved", partner=args.partner_id, path=path, url=args.url.rstrip("/")), file=out)
        return OK

    creds = Credentials.load(path)
    with Client(creds.api_key, creds.partner_id, creds.url, lang=lang, ca_file=creds.ca_file) as api:
        if args.command == "deploy":
            branding = None
            if args.colour is None and (args.company or args.logo):
                raise BadInput(m("input.company_without_colour"))
            if args.colour is not None:
                _check_colour(m, args.colour)
                branding = Branding(args.colour, args.company or args.name, args.logo)
            tenant = api.deploy_tenant(name=args.name, region=args.region, plan=args.plan, branding=branding)
            if as_json:
                _dump(tenant, out)
            else:
                print(m("deploy.done", id=tenant.id, name=tenant.name or args.name, region=tenant.home or args.region,
                        plan=tenant.plan or args.plan, status=tenant.status), file=out)
        elif args.command == "license":
            if args.days is not None and args.days <= 0:
                raise BadInput(m("input.bad_days", days=args.days))
            lic = api.issue_license(args.tenant, args.plan, args.features, expires_in_days=args.days)
            if as_json:
                _dump(lic, out)
            else:
                print(m("license.done", tenant=args.tenant, plan=args.plan, expires=_plain(lic.expires_at)), file=out)
                print(lic.token, file=out)
        elif args.command == "branding":
            _check_colour(m, args.colour)
            tenant = api.set_branding(args.tenant, args.colour, args.company, args.logo)
            if as_json:
                _dump(tenant, out)
            else:
                print(m("branding.done", id=tenant.id, colour=args.colour, company=args.company), file=out)
        elif args.command == "tenants":
            tenants = list(api.list_tenants(status=args.status))
            if as_json:
                _dump(tenants, out)
            elif not tenants:
                print(m("tenants.none"), file=out)
            else:
                header = [m(f"tenants.col.{c}") for c in ("id", "name", "plan", "region", "residency", "status")]
                _table([header] + [[t.id, t.name or "-", t.plan or "-", t.home or "-", t.residency, t.status] for t in tenants],
                       out)
                print(m("tenants.count", count=len(tenants)), file=out)
        elif args.command in ("show", "plan", "suspend", "delete"):
            if args.command == "delete" and not args.yes:
                raise BadInput(m("input.delete_needs_yes", tenant=args.tenant))
            if args.command == "show":
                tenant = api.get_tenant(args.tenant)
            elif args.command == "plan":
                tenant = api.change_plan(args.tenant, args.plan, expected_revision=args.revision)
            elif args.command == "suspend":
                tenant = api.suspend_tenant(args.tenant)
            else:
                deleted = api.delete_tenant(args.tenant)
                if deleted is None:  # a server that answers 204 has no record to show
                    deleted = Tenant(id=args.tenant, name=None, partner=None, plan=None, residency="-", home=None,
                                     status="deleted")
                tenant = deleted
            if as_json:
                _dump(tenant, out)
            else:
                print(m("tenant.line", id=tenant.id, name=tenant.name or "-", plan=tenant.plan or "-",
                        region=tenant.home or "-", residency=tenant.residency, status=tenant.status,
                        revision=tenant.revision), file=out)
        elif args.command == "metrics":
            metrics = api.get_metrics()
            if as_json:
                _dump(metrics, out)
            else:
                _print_metrics(m, metrics, out)
    return OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out, err = out or sys.stdout, err or sys.stderr
    # The language is known before parsing, so --help and argument errors are translated too.
    explicit = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--lang"), None)
    explicit = explicit or next((a.split("=", 1)[1] for a in argv if a.startswith("--lang=")), None)
    lang = detect_language(explicit)
    m = Messages(lang)
    try:
        args = build_parser(m).parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return _run(args, m, lang, out)
    except BadInput as exc:
        print(m("error.prefix", message=exc), file=err)
        return BAD_INPUT
    except CredentialsError as exc:
        print(m("error.credentials", error=exc), file=err)
        return BAD_INPUT
    except PartnerAPIError as exc:
        # The title comes from the server, already in our language (we send Accept-Language).
        print(m("error.api", status=exc.status, title=exc.title), file=err)
        if exc.detail:
            print(m("error.detail", detail=exc.detail), file=err)
        if exc.field:
            print(m("error.field", field=exc.field), file=err)
        if getattr(args, "json", False):
            _dump({"error": {"status": exc.status, "type": exc.type, "title": exc.title, "detail": exc.detail,
                             "field": exc.field}}, out)
        return BAD_INPUT if exc.status in INPUT_STATUSES else FAILED
    except PartnerConnectionError as exc:
        print(m("error.unreachable", error=exc), file=err)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())

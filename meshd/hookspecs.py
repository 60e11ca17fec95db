"""The meshd plugin contract: every hook a plugin may implement.

This module is the one place a plugin author needs to read. A plugin is a
class (or module) whose methods carry ``@meshd.hookimpl`` and are named after
the hooks below; it is installed under the ``meshd`` entry-point group::

    [project.entry-points.meshd]
    myplugin = "my_package.plugin:MyPlugin"

When the entry point names a class, each daemon makes its own instance, so
per-daemon state belongs on ``self``. A plugin implements only the hooks it
needs, and may accept only some of a hook's arguments.

How hooks are called (the facade in :mod:`meshd.plugins` reads all of this
from the specs below, so what is written here is what runs):

* A hook whose return annotation names ``Awaitable`` may return an awaitable
  instead of a value (an ``async def`` implementation); the daemon awaits it
  (like datasette's ``await_me_maybe``).
* The others are marked *sync*: they are called and their result used at
  once, never awaited, and an awaitable result is an error. They run on the
  thread of their caller, which for most is the daemon's event loop: while
  one runs, nothing else in the daemon does (no bus message, no probe, no
  HTTP answer). Keep them quick and put slow work (disk, network) in a
  service or an async hook. Each hook below says where it is called from.
* Implementations are isolated: one that raises is logged with the plugin's
  name, counted in ``meshd_plugin_errors_total{plugin,hook}``, and the other
  implementations still run. A plugin never takes the daemon down.
* A result must match the hook's return annotation (``Veto | None``, a
  sequence of ``Service``...). One that does not is logged with the plugin,
  the hook, what came back and what was expected, counted in
  ``meshd_plugin_errors_total{plugin,hook}``, and ignored.
* *firstresult* hooks (``@hookspec(firstresult=True)``) stop at the first
  implementation that returns an accepted result other than None.
* Hook wrappers (``wrapper=True``/``hookwrapper=True``) are not supported: a
  plugin that has one is refused when it is registered (logged with the
  plugin and hook, counted in ``meshd_plugin_load_errors_total{plugin}``) and
  the daemon runs without it.

The ``daemon`` argument is a :class:`meshd.daemon.Daemon`: ``daemon.region``,
``daemon.config``, ``daemon.bus``, ``daemon.hooks`` (to call other hooks),
``daemon.metrics``, ``daemon.state_dir``, ``daemon.log``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from prometheus_client.registry import Collector
    from pydantic import BaseModel

    from .adjustments import InvoiceAdjustment
    from .alerting import Alert, DeliveryResult, Notification
    from .auditcheck import AuditCheck
    from .config import ConfigIssue, LoadedConfig
    from .daemon import Daemon
    from .decisions import Decision, Proposal, Veto
    from .deploydriver import TrafficDriver
    from .healthstate import HealthCheck, HealthReport
    from .httpapi import Route
    from .i18n import Translator
    from .kms import DataKeyring, KMSProvider
    from .members import Member
    from .plugins import Hooks
    from .service import Service

PROJECT = "meshd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- configuration


@hookspec
def meshd_config_models() -> dict[str, type[BaseModel]]:
    """Config sections this plugin adds to a region's YAML file. *sync*

    Called once when plugins are loaded, before any config is read. Return
    ``{section_name: PydanticModel}``; the section ``section_name:`` of the
    daemon config is validated against the model (with its errors reported
    by file, key and line) and reaches the plugin as
    ``daemon.config.plugin(section_name)``. Every field needs a default, so
    that a config without the section is valid. It runs before the event
    loop starts, and on reload in a worker thread: return the models only.
    """


@hookspec
def meshd_validate_config(config: LoadedConfig, hooks: Hooks) -> Sequence[ConfigIssue] | None:
    """Check what pydantic alone cannot: the plugin's shared files, cross-references. *sync*

    Called after a config loaded and validated, by ``meshd run``,
    ``meshd check-config`` and on every reload. Return the problems found
    (``meshd.config.ConfigIssue`` naming file, key path and line) or None.
    A non-empty result makes the config invalid: at start the daemon exits
    2, on reload the old config is kept. ``hooks`` is the plugin facade, for
    checks that depend on other plugins (the health plugin checks each
    probe against the kinds from ``hooks.probe_kinds()``); no daemon exists
    yet, so only *sync* hooks may be called. It runs before the event loop
    starts, and on reload in a worker thread, so reading files here is fine.
    """


@hookspec
def meshd_federation_files() -> Sequence[str]:
    """Names of shared federation files this plugin reads, e.g. ``["dr_config.yaml"]``. *sync*

    ``meshd init`` copies each one found beside the region map into the new
    federation directory, so every region reads the same file. Called by the
    CLI only; no event loop is involved.
    """


@hookspec(firstresult=True)
def meshd_decrypt_secret(config: LoadedConfig, value: str, hooks: Hooks) -> str | None:
    """Decrypt a config value written ``!encrypted meshd:vN:...``. *sync*, *firstresult*

    Called when the daemon needs the plaintext of such a value (a NATS
    password, a receiver URL with a token), at the moment of use. Return the
    plaintext, or None if this plugin cannot decrypt it. The plaintext must
    never be logged; the daemon registers it with the log scrubber. It runs
    before the daemon is up (the NATS password is needed to connect), so it
    works from ``config`` alone; ``hooks`` is the plugin facade, to reach
    *sync* hooks such as ``hooks.kms_provider()``. It runs on the thread that
    needs the secret: the daemon's event loop when connecting to NATS or
    probing, a worker thread when the alerts plugin loads its receivers, the
    CLI. A slow decryption (a remote KMS) stalls the daemon meanwhile.
    """


# ---------------------------------------------------------------- command line


# The hook contract evaluates these annotations at run time, where _SubParsersAction takes no parameter.
@hookspec
def meshd_cli_commands(subparsers: argparse._SubParsersAction, t: Translator) -> None:  # type: ignore[type-arg]
    """Add ``meshd`` subcommands. *sync*

    Called when the CLI starts. Add parsers with ``subparsers.add_parser``
    (help texts through ``t``, the CLI's translator) and set
    ``parser.set_defaults(handler=fn)`` where ``fn(args, ctx) -> int`` returns
    the exit code; ``ctx`` is a :class:`meshd.cli.Context`. Called by the
    CLI only; no event loop is involved.
    """


# ---------------------------------------------------------------- daemon lifecycle


@hookspec
def meshd_startup(daemon: Daemon) -> Awaitable[None] | None:
    """The daemon is connected to the bus and about to start services.

    Called once per daemon, after the first successful bus connection and
    before ``meshd_services``; subscribe to bus subjects and load state here.
    """


@hookspec
def meshd_services(daemon: Daemon) -> Sequence[Service] | None:
    """Long-running coroutines the daemon runs and supervises for this plugin. *sync*

    Called once after ``meshd_startup``. Each :class:`meshd.service.Service`
    is restarted with backoff if it raises; the services of all plugins start
    together and READY=1 is sent to systemd once every one has reported
    readiness (``task_status.started()``, or its ``ready_timeout`` passed). It
    runs on the event loop: return the services, start no work here.
    """


@hookspec
def meshd_reload(daemon: Daemon, previous: LoadedConfig) -> Awaitable[None] | None:
    """A new, valid config is in place (SIGHUP).

    Called after ``daemon.config`` was swapped; ``previous`` is the old one.
    Settings that cannot change at run time should be logged as "needs a
    restart", not half-applied.
    """


@hookspec
def meshd_shutdown(daemon: Daemon) -> Awaitable[None] | None:
    """The daemon is stopping (SIGTERM); the graceful leave has been announced.

    Called once, before services are cancelled, with the bus still connected.
    All shutdown hooks together get a few seconds (the daemon exits within
    5 s of SIGTERM); flush state here, do not start new work.
    """


@hookspec
def meshd_bus_state(daemon: Daemon, connected: bool) -> Awaitable[None] | None:
    """The bus connection was lost (``connected=False``) or came back.

    Called on every transition after the first connection. While the bus is
    down the daemon is isolated: it must act on nobody's behalf.
    """


# ---------------------------------------------------------------- observability


@hookspec
def meshd_status(daemon: Daemon) -> dict[str, Any] | Awaitable[dict[str, Any]] | None:
    """Keys this plugin adds to ``/status`` and ``meshd status --json``.

    Called on every status request. Return a JSON-serializable dict merged
    into the top level of the status document (``{"members": [...]}``).
    """


@hookspec
def meshd_health_checks(daemon: Daemon) -> Sequence[HealthCheck] | None:
    """Checks behind ``/healthz``. *sync*

    Called on every health request. ``/healthz`` answers 200 only if the bus
    is connected and every returned :class:`meshd.healthstate.HealthCheck`
    is ok. It runs on the event loop: answer from state the plugin already
    keeps, do no I/O.
    """


@hookspec
def meshd_not_ready(daemon: Daemon) -> Sequence[str] | None:
    """What this plugin still lacks before the daemon may answer from the federation's state. *sync*

    Return i18n message keys (``failover.not_ready.decisions``), none once
    nothing is missing. A plugin that answers requests from that state
    (routing) refuses them while :meth:`meshd.daemon.Daemon.not_ready` names
    a reason, so a restarted daemon never answers from a view it has not
    read yet. Called on every such request, on the event loop: answer from
    state the plugin already keeps, do no I/O.
    """


@hookspec
def meshd_http_routes(daemon: Daemon) -> Sequence[Route] | None:
    """Extra routes of the daemon's local HTTP API. *sync*

    Called once at start. Each :class:`meshd.httpapi.Route` maps a method and
    path (``/v1/failover/{region}``) to a handler; ``admin=True`` routes need
    the token from ``<state_dir>/admin.token``. The CLI uses these to talk
    to the running daemon. Raise :class:`meshd.httpapi.HTTPError` for an
    answer such as 400 or 409 (its message is the client's); any other
    exception answers a generic 500 and goes to the log and
    ``meshd_http_handler_errors_total``, never to the client. Request bodies
    arrive whole, at most 1 MiB, never chunked. It runs on the event loop, before the HTTP server starts.
    """


@hookspec
def meshd_metrics(daemon: Daemon) -> Sequence[Collector] | None:
    """Custom Prometheus collectors to register in the daemon's registry. *sync*

    Called once at start. Simple counters and gauges are easier through
    ``daemon.metrics.counter(...)``; this hook is for collectors that
    compute their samples at scrape time. It runs on the event loop, once
    the bus is connected.
    """


# ---------------------------------------------------------------- health and membership


@hookspec
def meshd_probe_kinds() -> dict[str, type] | None:
    """Extra probe types for the health plugin. *sync*

    Return ``{kind: ProbeClass}``; a probe configured with ``kind: <kind>``
    is built from that class, a subclass of
    ``meshd_plugins.health.probes.Probe`` (its docstring is the contract:
    a ``Settings`` model, an async ``check()`` returning a ``ProbeResult``).
    Called at config validation (before the event loop starts, or in a
    worker thread on reload) and on the event loop whenever the health
    plugin (re)builds its probes: return the classes, do no I/O.
    """


@hookspec
def meshd_probe_result(daemon: Daemon, probe: str, kind: str, ok: bool, latency_ms: float, at: float) -> None:
    """One check of one of this region's health probes finished. *sync*

    Called by the health plugin after every check, before hysteresis is
    applied: ``ok`` is False for a critical result (a failure, a timeout, a
    crash of the probe), True for ok and warning; ``latency_ms`` is the
    latency the probe measured (HTTP, TCP: its ``value`` in seconds), else
    how long the check took; ``at`` the wall-clock time (epoch seconds) it ended.
    These raw results are the SLIs the sla plugin records. It runs on the
    event loop once per check of every probe: keep it to an append in
    memory, no I/O.
    """


@hookspec
def meshd_region_health_changed(daemon: Daemon, report: HealthReport,
                                previous: HealthReport | None) -> Awaitable[None] | None:
    """This region's own health verdict changed (healthy / degraded / down).

    Called by the health plugin on every change of status or reasons, after
    hysteresis; ``previous`` is None for the first verdict.
    """


@hookspec
def meshd_member_changed(daemon: Daemon, member: Member, previous: Member | None) -> Awaitable[None] | None:
    """A region's state changed in this daemon's membership view.

    Called by the membership plugin on every transition (alive, suspect,
    dead, left, isolated) and when a region is first seen (``previous`` is
    None). ``member.region == daemon.region`` with state ``isolated`` means
    this daemon lost the bus. Also called when another region's reported
    health changes without a state change (``member.state ==
    previous.state``, ``member.health != previous.health``). Calls come in
    order, one per change, from a queue of their own.
    """


# ---------------------------------------------------------------- failover and routing


@hookspec
def meshd_failover_vote(daemon: Daemon, proposal: Proposal) -> Veto | Awaitable[Veto | None] | None:
    """Should this daemon vote yes on ``proposal``? Return a ``Veto`` to refuse.

    Called before the daemon casts its vote on a failover or failback of
    ``proposal.region`` in ``proposal.term``. Any veto makes the daemon vote
    no, with the veto's reason in the audit log.
    """


@hookspec
def meshd_failover_committed(daemon: Daemon, decision: Decision) -> Awaitable[None] | None:
    """A failover or failback decision was committed by quorum; act on it.

    Called once per (region, term) on every daemon, including daemons that
    start after the commit. Actions should be idempotent: a daemon restarted
    mid-action is called again.
    """


@hookspec
def meshd_region_fenced(daemon: Daemon, fenced: bool, reason: str) -> Awaitable[None] | None:
    """This region fenced itself (``fenced=True``) or lifted its fence (``fenced=False``).

    Called by the fencing plugin on the fenced daemon only, once per change,
    in order, and again with ``fenced=True`` when a fence in place changes
    reason (a rejoined daemon learns it was failed over meanwhile). The
    fence goes up when the daemon has been isolated for
    ``fencing.after`` (``reason="isolated"``) or a committed failover of its
    region is in force (``"failed_over"``); it comes down once the daemon
    has rejoined, ``fencing.settle`` has passed and no failover of it is in
    force (``"rejoined"``, ``"failed_back"``), or when fencing is switched
    off (``"disabled"``). While fenced, routing sends no tenant here that
    another region of its residency can take. The return value is ignored;
    actions (take a load balancer out, page someone) must be idempotent,
    and may run while the bus is unreachable.
    """


@hookspec
def meshd_route_filter(daemon: Daemon | None, request: Any, candidates: Sequence[Any]) -> Sequence[Any] | None:
    """Narrow the regions a request may be routed to. *sync*

    Called for every routing decision after residency and liveness filtering,
    with the remaining candidates; return the subset to keep (or None to
    keep all). A filter can only remove candidates, never add one, so
    residency cannot be widened by a plugin. ``request`` is a
    :class:`meshd.RouteRequest` (tenant_id, residency, location,
    sovereignty, session) and each candidate a :class:`meshd.Candidate`
    (region, latency_ms, weight, carbon_intensity, degraded...). It runs on
    the routing hot path, on the event loop, once per decision: keep it
    cheap (no I/O), and know that it is only called at all when some plugin
    implements it.
    """


# ---------------------------------------------------------------- keys


@hookspec(firstresult=True)
def meshd_kms_provider(name: str, config: dict[str, Any]) -> KMSProvider | None:
    """A key-encryption-key provider named ``name``. *sync*, *firstresult*

    Called when the keys plugin opens a keyring whose ``kms.provider`` is
    ``name``; ``config`` is that provider's settings. Return a
    :class:`meshd.kms.KMSProvider`, or None if ``name`` is not yours. The
    keys plugin calls it from a worker thread (and the CLI directly), so a
    provider may reach its KMS while being built.
    """


@hookspec(firstresult=True)
def meshd_keyring(daemon: Daemon, purpose: str) -> DataKeyring | None:
    """This region's envelope-encryption keyring for ``purpose`` (``"metering"``, ``"secrets"``...). *sync*, *firstresult*

    Called by plugins that keep data at rest (the metering ledger). Return a
    :class:`meshd.kms.DataKeyring`, or None when no keyring is available; a
    caller must then say so plainly (log and metric), not silently store
    plaintext as if it were protected. It runs on its caller's thread and
    may read the keyring from disk: call it from a worker thread (as the
    metering plugin does), not on the event loop.
    """


@hookspec
def meshd_key_rotated(daemon: Daemon, metadata: dict[str, Any]) -> Awaitable[None] | None:
    """A regional key was rotated; ``metadata`` names the key and version, never its bytes.

    Called on the daemon of the region whose keyring rotated, after the new
    version is on disk, with ``region``, ``purpose``, ``key_id``, ``version``,
    ``created``, ``fingerprint``, ``reason`` (``manual``, ``age`` or
    ``count``) and the keyring's minimum versions. Other regions learn of it
    through the keys plugin's federation view (``/status`` ``keys.federation``).
    """


# ---------------------------------------------------------------- deploy


@hookspec(firstresult=True)
def meshd_deploy_driver(kind: str, region: str, config: dict[str, Any]) -> TrafficDriver | None:
    """A traffic driver of kind ``kind`` for one service in ``region``. *sync*, *firstresult*

    Called by the deploy plugin when a rollout step needs to move traffic in
    ``region``, with the driver settings the pipeline file gives for that
    service and region (``config``, ``kind`` removed). Return a
    :class:`meshd.deploydriver.TrafficDriver`, or None when ``kind`` is not
    yours. The builtin ones are ``haproxy`` (HAProxy's Runtime API on its
    admin socket) and ``command`` (a command per step, the step as JSON on
    stdin). Raise ``ValueError`` naming the setting for bad settings. It runs
    on the event loop: build the driver, do no I/O (``apply`` and ``stats``
    are awaited later).
    """


# ---------------------------------------------------------------- alerts


@hookspec
def meshd_alert(daemon: Daemon, alert: Alert) -> Awaitable[None] | None:
    """Raise (``status="firing"``) or resolve an alert.

    Plugins call ``daemon.hooks.alert(alert)``; the alerts plugin implements
    this hook, routes the alert and notifies people. Raising the same labels
    again is a refresh, not a new alert.
    """


@hookspec(firstresult=True)
def meshd_notify(daemon: Daemon, notification: Notification) -> DeliveryResult | Awaitable[DeliveryResult] | None:
    """Deliver one notification. *firstresult*

    Called by the alerts plugin's delivery worker, off the event loop's
    critical path and under a deadline. Return a
    :class:`meshd.alerting.DeliveryResult`, or None to leave the
    notification to the next implementation (the builtin one uses apprise
    and the PagerDuty/Opsgenie APIs).
    """


# ---------------------------------------------------------------- usage and billing


@hookspec(firstresult=True)
def meshd_usage_totals(daemon: Daemon, tenant: str, period: str
                       ) -> dict[str, Any] | Awaitable[dict[str, Any] | None] | None:
    """Federation-wide usage totals of ``tenant`` over ``period`` (``YYYY-MM``...). *firstresult*

    Called by the billing plugin when it makes an invoice, on the daemon's
    event loop. The metering plugin answers with what ``GET /v1/usage``
    returns: ``{"complete": bool, "missing": [regions], "meters": {meter:
    {"value": "exact decimal", "exact": bool, "kind", "events"}}, ...}``, or
    ``{"error": ..., "code": ...}`` for a tenant or period it cannot answer
    for. None: no plugin meters usage here.
    """


@hookspec
def meshd_invoice_adjustments(daemon: Daemon, tenant: str, period: str, lang: str
                              ) -> Sequence[InvoiceAdjustment] | Awaitable[Sequence[InvoiceAdjustment]] | None:
    """Signed adjustment lines for ``tenant``'s invoice of ``period`` (``YYYY-MM``).

    Called by the billing plugin on the daemon's event loop each time it makes
    an invoice, before tax. Return :class:`meshd.adjustments.InvoiceAdjustment`
    items (a service credit is a negative ``percent_of_base``), with the
    description in ``lang``; None or an empty list for none. The billing
    plugin applies each ``key`` at most once per tenant and period, so
    returning the same adjustment when a period is billed again never
    credits twice.
    """


# ---------------------------------------------------------------- compliance audit


@hookspec
def meshd_audit_checks(daemon: Daemon) -> Sequence[AuditCheck] | None:
    """Every plugin's compliance checks. *sync*

    Called by the audit plugin each time an audit runs in this region (asked
    by ``meshd audit`` over the bus, or on its schedule), on the event loop:
    return :class:`meshd.auditcheck.AuditCheck` objects without doing the
    checking here. The audit plugin then calls each check's ``run(daemon)``
    (sync or async), time-boxed (``audit.check_timeout``); one that raises
    or runs late is recorded as status ``error`` and the audit goes on.
    Check ids are stable and dotted (``transit.nats_tls``); the framework
    mappings in ``etc/compliance/*.yaml`` name them.
    """

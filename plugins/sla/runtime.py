"""The sla plugin inside a daemon: the recorder's interval clock and the history file."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus

from meshd import Alert, InvoiceAdjustment, Translator
from meshd.bus import NoAnswer
from meshd.envelope import Envelope
from meshd.transport import Message

from .burn import BurnEngine, Incident, Transition, rules_for_period, window_name
from .config import SECTION, SlaConfig
from .latency import Histogram
from .latencyburn import LatencyBurn
from .period import parse_period
from .recorder import Recorder
from .slo import Slo, load_slo, references, slo_path
from .store import Sample, SampleStore
from .summary import Merged, Part, condemned, intersect, merge, quorum_of, summarize_store
from .tenant import shares, tenant_sli

A = TypeVar("A")
B = TypeVar("B")
QUERY_KIND = "sla-query"
DOWNSAMPLE_EVERY_S = 3600.0
PRIME_MS = 3 * 86_400_000
"""History read back at start so the burn windows (the longest is 3 days) continue where they were."""


def parsed_own(region: str, answers: dict[str, dict[str, Any]], parsed: list[dict[str, dict[str, Part]]]
               ) -> Part | None:
    """The region's own probes part among the parsed answers (the answers keep their order)."""
    for name, by in zip(answers, parsed, strict=True):
        if name == region:
            return by.get(region, {}).get("probes")
    return None


class UnknownTenant(KeyError):
    pass


async def _both(a: Awaitable[A], b: Awaitable[B]) -> tuple[A, B]:
    """Two awaitables at once (the SLI answers and the metering counts go to the same regions)."""
    results: dict[int, Any] = {}

    async def run(i: int, aw: Awaitable[Any]) -> None:
        results[i] = await aw

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, a)
        tg.start_soon(run, 1, b)
    return results[0], results[1]


class Runtime:
    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.settings: SlaConfig = daemon.plugin_config(SECTION)
        self.log = logging.getLogger(f"meshd.{daemon.region}.sla")
        self.interval_ms = max(1, round(self.settings.sample_interval * 1000))
        self.recorder = Recorder(daemon.region, self.interval_ms, self.settings.probes)
        self.store: SampleStore | None = None
        self.current_ms = self.recorder.bucket(time.time())
        self.recorder.start_ms = self.current_ms
        self.written = 0
        self.t = Translator(daemon.config.daemon.lang)
        self.slo: Slo = load_slo(slo_path(daemon.config, self.settings.slo), **references(daemon.config))
        self.engines: dict[str, BurnEngine] = {}
        self.latency: dict[str, LatencyBurn] = {}
        recover = round(self.settings.incident_recovery * 1000 / self.interval_ms)
        for plan in self.slo.plans:
            objective = self.slo.objective(plan, daemon.region)
            # The budget the alerts spend is the one of the plan's first window (28 days: factors x 28/30).
            rules = rules_for_period(self.slo.windows_for(plan)[0].length_ms)
            if objective.availability is not None:
                self.engines[plan] = BurnEngine(daemon.region, objective.availability, rules,
                                                scale=self.settings.burn_window_scale, recover_samples=recover)
            if objective.latency_p95_ms is not None:
                self.latency[plan] = LatencyBurn(daemon.region, objective.latency_p95_ms, rules,
                                                 self.settings.burn_window_scale, recover)
        m = daemon.metrics
        self.m_samples = m.counter("sla_samples_written_total", "SLI history rows written, by source", ["source"])
        self.m_errors = m.counter("sla_store_errors_total", "SLI history writes that failed")
        self.m_prom_errors = m.counter("sla_prometheus_errors_total", "Prometheus SLI queries that failed")
        # The same SLI as counters, for teams that alert from Prometheus (contrib/prometheus/sla-rules.yml).
        self.m_covered = m.counter("sla_covered_seconds_total", "Seconds this region's SLI probes covered", ["region"])
        self.m_up = m.counter("sla_up_seconds_total", "Of those, seconds the region was available", ["region"])

    @property
    def path(self) -> Path:
        return self.settings.history or self.daemon.state_dir / "sla" / "history.sqlite"

    async def open(self) -> None:
        self.store = await anyio.to_thread.run_sync(SampleStore, self.path)
        now_ms = int(time.time() * 1000)
        past = await anyio.to_thread.run_sync(self.store.samples, now_ms - PRIME_MS, now_ms, self.daemon.region)
        for sample in past:
            if sample.source == "probes":
                for engine in self.engines.values():
                    engine.add(sample.t_ms, sample.span_ms, sample.up_ms)
                if sample.hist:
                    hist = sample.histogram()
                    for latency in self.latency.values():
                        latency.add(sample.t_ms, sample.span_ms, hist)
        # Alerts replayed from the past are not raised again: only what changes from now on is news.

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Close an interval at each boundary of the wall clock, write its rows, fold old rows hourly."""
        task_status.started()
        next_fold = 0.0
        while True:
            boundary_ms = self.current_ms + self.interval_ms
            # Sleeping to the wall-clock boundary keeps every region's rows aligned on the same starts.
            await anyio.sleep(max(0.0, boundary_ms / 1000 - time.time()))
            await self.flush(boundary_ms)
            if anyio.current_time() >= next_fold:
                next_fold = anyio.current_time() + DOWNSAMPLE_EVERY_S
                await self.fold()

    async def flush(self, boundary_ms: int) -> None:
        start, self.current_ms = self.current_ms, boundary_ms
        rows = self.recorder.close_interval(start, boundary_ms)
        source = self.settings.prometheus
        if source is not None:
            rows = [r for r in rows if not (r.region == self.daemon.region and r.source == "probes")]
            own = await self.from_prometheus(source, start, boundary_ms)
            if own is not None:
                rows.append(own)
        if not rows or self.store is None:
            return
        try:
            await anyio.to_thread.run_sync(self.store.add, rows)
        except Exception as exc:  # a full disk must not stop the recording of later samples
            self.m_errors.inc()
            self.log.error("writing SLI samples failed: %s: %s", type(exc).__name__, exc)
            return
        self.written += len(rows)
        for r in rows:
            self.m_samples.labels(r.source).inc()
            if r.source == "probes":
                self.m_covered.labels(r.region).inc(r.span_ms / 1000)
                self.m_up.labels(r.region).inc(r.up_ms / 1000)
        await self.judge(rows)

    async def judge(self, rows: list[Sample]) -> None:
        """Feed this region's new sample to every plan's burn engine; raise or resolve the alerts that changed."""
        for r in rows:
            if r.region != self.daemon.region or r.source != "probes":
                continue
            changes = [(plan, "availability", engine.objective, c) for plan, engine in self.engines.items()
                       for c in engine.add(r.t_ms, r.span_ms, r.up_ms)]
            hist = r.histogram()
            changes += [(plan, "latency", latency.objective_ms, c) for plan, latency in self.latency.items()
                        for c in latency.add(r.t_ms, r.span_ms, hist)]
            for plan, sli, objective, change in changes:
                if self.settings.alerts:
                    await self.daemon.hooks.alert(self.daemon, self.burn_alert(plan, objective, change, sli))
                self.log.log(logging.WARNING if change.firing else logging.INFO,
                             "SLO %s burn %s for plan %s: %s (%.1fx over %s, %.1fx over %s)", sli, change.rule.name,
                             plan, "firing" if change.firing else "resolved", change.long_burn,
                             window_name(change.rule.long_ms), change.short_burn, window_name(change.rule.short_ms))
        # The latest incidents (one just resolved, one just opened) are kept on disk: a month's MTTD and MTTR
        # outlive a restart.
        latest = self.incidents()[-2:]
        if latest and self.store is not None:
            try:
                await anyio.to_thread.run_sync(self.store.save_incidents, latest)
            except Exception as exc:
                self.m_errors.inc()
                self.log.error("writing incidents failed: %s: %s", type(exc).__name__, exc)

    def burn_alert(self, plan: str, objective: Any, change: Transition, sli: str = "availability") -> Alert:
        """``SLOErrorBudgetBurn`` (availability) or ``SLOLatencyBudgetBurn`` (checks slower than the p95 objective)."""
        rule = change.rule
        region = self.daemon.region
        name = "SLOErrorBudgetBurn" if sli == "availability" else "SLOLatencyBudgetBurn"
        labels = {"alertname": name, "severity": "critical" if rule.severity == "page" else "warning",
                  "region": region, "plan": plan, "rule": rule.name}
        key = "sla.alert.burn.summary" if sli == "availability" else "sla.alert.latency.summary"
        summary = self.t(key, region=region, plan=plan, objective=str(objective))
        if not change.firing:
            summary = self.t("sla.alert.resolved", summary=summary)
        description = self.t("sla.alert.burn.description", factor=f"{rule.factor:g}", long=window_name(rule.long_ms),
                             short=window_name(rule.short_ms), long_burn=f"{change.long_burn:.1f}",
                             short_burn=f"{change.short_burn:.1f}")
        return Alert(labels=labels, annotations={"summary": summary, "description": description},
                     status="firing" if change.firing else "resolved")

    def incidents(self) -> list[Incident]:
        """This region's incidents, as seen against the strictest plan (the one that notices the most)."""
        if not self.engines:
            return []
        strictest = max(self.engines.values(), key=lambda e: e.objective)
        return list(strictest.incidents)

    async def from_prometheus(self, source: Any, start: int, end: int) -> Sample | None:
        """This region's row from Prometheus; None (counted, logged) when it cannot answer: no row is not "up"."""
        from . import promsource  # only regions whose SLIs come from Prometheus load its client

        try:
            reading = await anyio.to_thread.run_sync(promsource.read, source.url, source.availability_query,
                                                     source.latency_query, source.timeout)
        except promsource.QueryFailed as exc:
            self.m_prom_errors.inc()
            self.log.warning("Prometheus SLI query failed: %s", exc)
            return None
        if reading.availability is None:
            return None
        hist = Histogram()
        if reading.p95_ms is not None:
            hist.add(reading.p95_ms)
        span = end - start
        return Sample(self.daemon.region, start, span, span * reading.availability, 1, hist.dumps())

    async def fold(self) -> None:
        if self.store is None:
            return
        now_ms = int(time.time() * 1000)
        try:
            await anyio.to_thread.run_sync(self.store.downsample, now_ms - int(self.settings.full_resolution * 1000),
                                           now_ms - int(self.settings.retention * 1000))
        except Exception as exc:
            self.m_errors.inc()
            self.log.error("downsampling the SLI history failed: %s: %s", type(exc).__name__, exc)

    async def stop(self) -> None:
        """SIGTERM: the interval under way is written with the time it covered, so a clean stop loses nothing."""
        now_ms = int(time.time() * 1000)
        if now_ms > self.current_ms:
            await self.flush(now_ms)
        self.log.info("SLI history closed: %d row(s) written by this process", self.written)
        if self.store is not None:
            self.store.close()
            self.store = None

    def status(self) -> dict[str, Any]:
        return {"history": str(self.path), "sample_interval_s": self.interval_ms / 1000,
                "rows_written": self.written, "dead_peers": sorted(self.recorder.dead),
                "failed_over": dict(self.recorder.failed_over),
                "burn": {plan: {"objective": str(e.objective), "rates": e.burn_rates(),
                                "firing": sorted(n for n, on in e.firing.items() if on)}
                         for plan, e in self.engines.items()},
                "latency_burn": {plan: {"objective_ms": str(lb.objective_ms), "rates": lb.engine.burn_rates(),
                                        "firing": sorted(n for n, on in lb.engine.firing.items() if on)}
                                 for plan, lb in self.latency.items()},
                "incidents": [i.to_json() for i in self.incidents()]}



    # ------------------------------------------------------------ the federation view

    async def local_answer(self, since_ms: int, until_ms: int, daily: bool = False) -> dict[str, Any]:
        """What this daemon knows about [since, until): its rows summed per region and source, its incidents.

        ``daily``: this region's own availability per UTC day instead (the dashboard's uptime bars).
        """
        if self.store is None:
            return {"ok": False, "error": "the SLI history is not open"}
        if daily:
            days = await anyio.to_thread.run_sync(self.store.daily, self.daemon.region, since_ms, until_ms)
            return {"ok": True, "region": self.daemon.region,
                    "daily": [{"day_ms": d, "availability": up / span if span else None} for d, span, up in days],
                    "burn": self.status()["burn"], "incidents": await self.stored_incidents(since_ms, until_ms)}
        parts = await anyio.to_thread.run_sync(summarize_store, self.store, since_ms, until_ms)
        incidents = await self.stored_incidents(since_ms, until_ms)
        return {"ok": True, "region": self.daemon.region,
                "parts": {r: {src: p.to_json() for src, p in by.items()} for r, by in parts.items()},
                "incidents": incidents, "burn": self.status()["burn"]}

    async def stored_incidents(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """This region's incidents over a period from disk, with the one still open from memory (written soon)."""
        assert self.store is not None
        stored = await anyio.to_thread.run_sync(self.store.incidents, self.daemon.region, since_ms, until_ms)
        by_opening = {i.opened_ms: i for i in stored}
        for i in self.incidents():
            if i.opened_ms < until_ms and (i.resolved_ms is None or i.resolved_ms >= since_ms):
                by_opening[i.opened_ms] = i
        return [by_opening[k].to_json() for k in sorted(by_opening)]

    async def on_query(self, envelope: Envelope, message: Message) -> None:
        try:
            since_ms, until_ms = int(envelope.body["since_ms"]), int(envelope.body["until_ms"])
            daily = bool(envelope.body.get("daily", False))
        except (KeyError, TypeError, ValueError) as exc:
            await self.daemon.bus.reply(message, "sla.answer", {"ok": False, "error": f"bad request: {exc}"})
            return
        await self.daemon.bus.reply(message, "sla.answer", await self.local_answer(since_ms, until_ms, daily))

    async def _ask(self, region: str, since_ms: int, until_ms: int, daily: bool = False) -> dict[str, Any]:
        if region == self.daemon.region:
            answer = await self.local_answer(since_ms, until_ms, daily)
            if not answer.get("ok"):
                raise NoAnswer(str(answer.get("error")))
            return answer
        return await self.daemon.bus.ask(QUERY_KIND, "sla.query",
                                         {"since_ms": since_ms, "until_ms": until_ms, "daily": daily},
                                         target=region, timeout=self.settings.query_timeout)

    async def gather(self, since_ms: int, until_ms: int, daily: bool = False
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Every region's answer, and why each that did not answer did not."""
        answers: dict[str, dict[str, Any]] = {}
        missing: dict[str, str] = {}

        async def one(region: str) -> None:
            try:
                answers[region] = await self._ask(region, since_ms, until_ms, daily)
            except NoAnswer as exc:
                missing[region] = str(exc)

        async with anyio.create_task_group() as tg:
            for region in self.daemon.config.region_map.regions:
                tg.start_soon(one, region)
        return answers, missing

    async def dashboard(self, days: int) -> dict[str, Any]:
        """The web page's data: per region, availability per day, burn now, incidents; who did not answer."""
        until_ms = int(time.time() * 1000)
        until_ms += 86_400_000 - until_ms % 86_400_000
        answers, missing = await self.gather(until_ms - days * 86_400_000, until_ms, daily=True)
        return {"days": days, "until_ms": until_ms, "missing": missing,
                "regions": {r: {k: a.get(k) for k in ("daily", "burn", "incidents")} for r, a in sorted(answers.items())}}

    async def federation(self, period: str | None, plan: str | None = None, now_s: float | None = None
                         ) -> dict[str, Any]:
        """Every region's figures merged from every region's answer, per window; who did not answer, and why.

        ``period`` None: each plan over its own windows from slo.yaml (the
        first one is also given as the plan's ``regions``); a period string
        judges every plan over that one period instead. Raises
        :class:`~.period.BadPeriod`, or KeyError for an unknown plan.
        """
        now_s = time.time() if now_s is None else now_s
        if plan is not None and plan not in self.slo.plans:
            raise KeyError(plan)
        plans = self.slo.plans if plan is None else [plan]
        spans: dict[str, tuple[int, int]] = {}
        plan_windows: dict[str, list[str]] = {}
        if period is not None:
            spans[period] = parse_period(period, now_s)
            plan_windows = {name: [period] for name in plans}
        else:
            for name in plans:
                for w in self.slo.windows_for(name):
                    spans.setdefault(w.name, w.bounds(now_s))
                    plan_windows.setdefault(name, []).append(w.name)
        figures: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}

        async def one(window: str) -> None:
            figures[window] = await self.window_figures(*spans[window])

        async with anyio.create_task_group() as tg:
            for window in spans:
                tg.start_soon(one, window)
        missing: dict[str, str] = {}
        for _, why in figures.values():
            missing.update(why)
        out_plans: dict[str, Any] = {}
        for name in plans:
            judged = {w: self.judge_regions(name, figures[w][0]) for w in plan_windows[name]}
            first = plan_windows[name][0]
            out_plans[name] = {"objective": self.slo.objective(name).to_json(), "window": first,
                               "regions": judged[first], "windows": judged}
        first_window = next(iter(spans))
        since_ms, until_ms = spans[first_window]
        return {"period": period if period is not None else ", ".join(spans), "since_ms": since_ms,
                "until_ms": until_ms, "complete": not missing, "missing": missing,
                "regions": figures[first_window][0],
                "windows": {w: {"since_ms": a, "until_ms": b, "regions": figures[w][0]} for w, (a, b) in spans.items()},
                "plans": out_plans}

    def judge_regions(self, plan: str, regions: dict[str, Any], tenant: str | None = None) -> dict[str, Any]:
        return {region: judge(self.slo.objective(plan, region, tenant).availability,
                              self.slo.objective(plan, region, tenant).latency_p95_ms,
                              f.get("availability"), f.get("p95_ms"))
                for region, f in regions.items()}

    async def merged(self, since_ms: int, until_ms: int
                     ) -> tuple[dict[str, Merged], dict[str, dict[str, Any]], dict[str, str]]:
        """Every answering region's merged figures over [since, until), the raw answers, who did not answer and why."""
        answers, missing = await self.gather(since_ms, until_ms)
        parsed = [{r: {src: Part.from_json(p) for src, p in by.items()} for r, by in a.get("parts", {}).items()}
                  for a in answers.values()]
        regions = list(self.daemon.config.region_map.regions)
        quorum = quorum_of(len(regions))
        merged: dict[str, Merged] = {}
        for region in regions:
            if region in missing:
                continue
            own = parsed_own(region, answers, parsed)
            cut = intersect(own.ranges, condemned(region, parsed, quorum)) if own is not None else []
            overruled = await self.own_rows_over(region, cut) if cut else None
            merged[region] = merge(region, parsed, quorum=quorum, overruled=overruled)
        return merged, answers, missing

    async def own_rows_over(self, region: str, ranges: list[tuple[int, int]]) -> Part:
        """The sums of ``region``'s own rows over ``ranges`` (a second, rare question: only partitions need it)."""
        total = Part()
        for since_ms, until_ms in ranges:
            answer = await self._ask(region, since_ms, until_ms)
            doc = answer.get("parts", {}).get(region, {}).get("probes")
            if doc is None:
                continue
            part = Part.from_json(doc)
            total.span_ms += part.span_ms
            total.up_ms += part.up_ms
            total.checks += part.checks
            total.hist.merge(part.hist)
        return total

    async def window_figures(self, since_ms: int, until_ms: int) -> tuple[dict[str, Any], dict[str, str]]:
        """Every region's merged figures over [since, until), and the regions that did not answer."""
        merged, answers, missing = await self.merged(since_ms, until_ms)
        out: dict[str, Any] = {}
        for region in self.daemon.config.region_map.regions:
            if region in missing:
                # Without its own answer only the bad news would be left: show no number rather than a wrong one.
                out[region] = {"answered": False, "reason": missing[region]}
                continue
            incidents = answers[region].get("incidents", [])
            out[region] = {"answered": True, **merged[region].to_json(), "incidents": incidents,
                           **incident_means(incidents), "burn": answers[region].get("burn", {})}
        return out, missing

    # ------------------------------------------------------------ tenants

    def tenant_entry(self, tenant: str) -> Any:
        directory = self.daemon.config.tenants
        entry = directory.tenants.get(tenant) if directory is not None else None
        if entry is None:
            raise UnknownTenant(f"tenant {tenant!r} is not in the tenant directory")
        return entry

    def served_by(self, tenant: str) -> list[str]:
        """The regions that may serve a tenant: its residency's, and its home region."""
        entry = self.tenant_entry(tenant)
        served = list(self.daemon.config.tenants.residency_regions(tenant, self.daemon.config.region_map))
        if entry.home and entry.home not in served:
            served.append(entry.home)
        return served

    async def routed_events(self, tenant: str, served: list[str], since_ms: int, until_ms: int) -> dict[str, int] | None:
        """The tenant's metered usage events per serving region, None when metering is absent or one cannot say."""
        plugin = self.daemon.hooks.pm.get_plugin("metering")
        metering = getattr(plugin, "runtime", None)
        if metering is None or not hasattr(metering, "events_by_region"):
            return None
        counts = await metering.events_by_region(tenant, since_ms / 1000, until_ms / 1000, served)
        if any(v is None for v in counts.values()):
            return None
        return {r: int(v) for r, v in counts.items() if v is not None}

    async def tenant_window(self, tenant: str, since_ms: int, until_ms: int) -> dict[str, Any]:
        """A tenant's figures over [since, until): the weighted SLI, the weights and how they were found."""
        entry = self.tenant_entry(tenant)
        served = self.served_by(tenant)
        (merged, _, missing), events = await _both(self.merged(since_ms, until_ms),
                                                   self.routed_events(tenant, served, since_ms, until_ms))
        weights, how = shares(served, events, entry.home)
        unanswered = {r: missing[r] for r in weights if r in missing}
        sli = tenant_sli(weights, merged) if not unanswered else None
        return {"since_ms": since_ms, "until_ms": until_ms, "weighting": how, "events": events,
                "weights": sli.weights if sli is not None else weights,
                "availability": None if sli is None else sli.availability,
                "p95_ms": None if sli is None else sli.p95_ms, "missing": unanswered,
                "regions": {r: {"availability": merged[r].availability, "p95_ms": merged[r].p95_ms}
                            for r in weights if r in merged}}

    async def tenant_view(self, tenant: str, period: str | None, now_s: float | None = None) -> dict[str, Any]:
        """``meshd sla --tenant``: the tenant's SLI over each window of its plan (or ``period``), judged
        against its own objective (tenant beats plan). Raises UnknownTenant or BadPeriod."""
        now_s = time.time() if now_s is None else now_s
        entry = self.tenant_entry(tenant)
        plan = entry.plan or None
        if period is not None:
            spans = {period: parse_period(period, now_s)}
        else:
            windows = self.slo.windows_for(plan) if plan else self.slo.windows
            spans = {w.name: w.bounds(now_s) for w in windows}
        objective = self.slo.objective(plan, tenant=tenant)
        out: dict[str, Any] = {}

        async def one(name: str) -> None:
            figures = await self.tenant_window(tenant, *spans[name])
            out[name] = {**figures, **judge(objective.availability, objective.latency_p95_ms,
                                            figures["availability"], figures["p95_ms"])}

        async with anyio.create_task_group() as tg:
            for name in spans:
                tg.start_soon(one, name)
        missing: dict[str, str] = {}
        for w in out.values():
            missing.update(w["missing"])
        return {"tenant": tenant, "plan": plan, "objective": objective.to_json(),
                "period": period if period is not None else ", ".join(spans), "complete": not missing,
                "missing": missing, "windows": {name: out[name] for name in spans}}

    # ------------------------------------------------------------ credits

    async def credits(self, tenant: str, period: str, lang: str) -> list[InvoiceAdjustment]:
        """The service credit ``tenant`` is owed for calendar month ``period`` by its plan's schedule (none: [])."""
        directory = self.daemon.config.tenants
        entry = directory.tenants.get(tenant) if directory is not None else None
        if entry is None or not entry.plan or entry.plan not in self.slo.file.plans:
            return []
        steps = self.slo.file.plans[entry.plan].credits
        if not steps:
            return []
        since_ms, until_ms = parse_period(period, time.time())
        # The same tenant SLI as meshd sla --tenant: a serving region that cannot say makes no credit a guess.
        figures = await self.tenant_window(tenant, since_ms, until_ms)
        if figures["missing"]:
            raise NoAnswer("no SLA figures from " + ", ".join(f"{r} ({why})" for r, why in figures["missing"].items()))
        achieved = figures["availability"]
        if achieved is None:
            return []
        percent = max((s.percent for s in steps if achieved * 100 < float(s.below)), default=None)
        if percent is None:
            return []
        objective = self.slo.objective(entry.plan, tenant=tenant).availability
        t = Translator(lang)
        text = t("sla.credit.description", period=period, achieved=f"{achieved * 100:.3f}",
                 objective=str(objective), percent=str(percent))
        return [InvoiceAdjustment(source="sla", key=f"sla:{period}", description=text, percent_of_base=-percent)]

    async def all_credits(self, period: str) -> dict[str, Any]:
        """Every tenant's credit for ``period`` (for federations without the billing plugin)."""
        directory = self.daemon.config.tenants
        lang = self.daemon.config.daemon.lang
        out: list[dict[str, Any]] = []
        failed: dict[str, str] = {}
        for tenant in sorted(directory.tenants) if directory is not None else []:
            try:
                credits = await self.credits(tenant, period, getattr(directory.tenants[tenant], "lang", None) or lang)
            except NoAnswer as exc:
                failed[tenant] = str(exc)
                continue
            entry = directory.tenants[tenant]
            for c in credits:
                out.append({"tenant": tenant, "plan": entry.plan, "key": c.key,
                            "percent_of_base": str(c.percent_of_base), "description": c.description})
        return {"period": period, "credits": out, "complete": not failed, "failed": failed}


def incident_means(incidents: list[dict[str, Any]]) -> dict[str, Any]:
    """MTTD and MTTR in seconds over the incidents that were detected / resolved."""
    ttd = [i["ttd_ms"] for i in incidents if i.get("ttd_ms") is not None]
    ttr = [i["ttr_ms"] for i in incidents if i.get("ttr_ms") is not None]
    return {"mttd_s": sum(ttd) / len(ttd) / 1000 if ttd else None,
            "mttr_s": sum(ttr) / len(ttr) / 1000 if ttr else None}


def judge(objective: Any, latency_objective: Any, availability: float | None, p95_ms: float | None) -> dict[str, Any]:
    """Budget left and whether each objective is met (None: not measured)."""
    from .burn import budget_left

    left = budget_left(availability, objective) if objective is not None else None
    return {
        "availability_met": None if availability is None or objective is None
        else availability * 100 >= float(objective),
        "budget_left": None if left is None else round(left, 6),
        "latency_met": None if p95_ms is None or latency_objective is None else p95_ms <= float(latency_objective),
    }

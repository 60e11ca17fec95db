"""Plugin services and their supervisor.

A service is a long-running coroutine a plugin hands the daemon through
``meshd_services``. The supervisor restarts it with jittered exponential
backoff (:mod:`meshd.backoff`) when it raises, so one plugin's bug degrades
that plugin, not the daemon.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import anyio
from anyio.abc import TaskStatus

from .backoff import Backoff
from .metrics import Metrics


@dataclass(frozen=True)
class Service:
    """A named coroutine function the daemon runs for the plugin.

    ``run`` may accept ``task_status`` (anyio readiness): the daemon reports
    READY only after every service has called ``task_status.started()`` (or
    failed once). A service that returns is done and not restarted.
    """

    name: str
    run: Callable[..., Awaitable[None]]
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    ready_timeout: float = 15.0


def _accepts_task_status(fn: Callable[..., Any]) -> bool:
    try:
        return "task_status" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


async def supervise(service: Service, plugin: str, log: logging.Logger, metrics: Metrics,
                    *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Run ``service`` for ever, restarting it after a failure; never raises but for cancellation."""
    restarts = metrics.counter("service_restarts_total", "Plugin service restarts after a failure", ["service"])
    up = metrics.gauge("service_up", "1 while a plugin service is running", ["service"])
    reported = False
    backoff = Backoff(service.backoff_initial, service.backoff_max)
    while True:
        began = time.monotonic()
        try:
            up.labels(service.name).set(1)
            if _accepts_task_status(service.run):
                async with anyio.create_task_group() as tg:
                    with anyio.fail_after(service.ready_timeout) if not reported else contextlib.nullcontext():
                        # A service that reports readiness: anyio types start() for coroutine functions only.
                        await tg.start(cast(Any, service.run))
                    if not reported:
                        reported = True
                        task_status.started()
            else:
                if not reported:
                    reported = True
                    task_status.started()
                await service.run()
            up.labels(service.name).set(0)
            log.info("service %s (plugin %s) finished", service.name, plugin)
            return
        except Exception as exc:
            up.labels(service.name).set(0)
            if not reported:
                reported = True
                task_status.started()
            if time.monotonic() - began > 60:
                backoff.reset()  # it ran fine for a while: start the backoff over
            delay = backoff.next()
            restarts.labels(service.name).inc()
            log.error("service %s (plugin %s) failed: %s: %s; restarting in %.1fs",
                      service.name, plugin, type(exc).__name__, exc, delay, exc_info=exc)
            await anyio.sleep(delay)

"""The dashboard in a real headless Chromium: real daemons, recorded history, English and Arabic (right to left).

Set SLA_SCREENSHOTS=DIR to also save a screenshot per language (docs/img/ holds the ones the docs show).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from meshd.testing import running_daemons, write_federation
from meshd_plugins.sla import Sample, SampleStore

pytestmark = [pytest.mark.anyio, pytest.mark.nats]
REGIONS = ["eu-west-1", "us-east-1"]
DAY, HOUR = 86_400_000, 3_600_000


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def record(path: Path, region: str, down_hours_by_day: dict[int, int]) -> list[float]:
    """30 days of hourly rows ending yesterday; the daily availabilities, oldest first."""
    today = int(time.time() * 1000) // DAY * DAY
    rows, daily = [], []
    for d in range(30, 0, -1):
        day = today - d * DAY
        down = down_hours_by_day.get(d, 0)
        rows += [Sample(region, day + h * HOUR, HOUR, 0.0 if h < down else float(HOUR), 360) for h in range(24)]
        daily.append(1 - down / 24)
    store = SampleStore(path)
    store.add(rows)
    store.close()
    return daily


class Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.uptime: dict[str, float] = {}
        self.region: str | None = None
        self.canvases: dict[str, int] = {}
        self.html_dir = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.html_dir = a.get("dir") or ""
        if tag == "section" and a.get("data-region"):
            self.region = a["data-region"]
        if tag == "span" and self.region and a.get("data-uptime"):
            self.uptime[self.region] = float(a["data-uptime"] or "nan")
        if tag == "canvas" and self.region:
            self.canvases[self.region] = self.canvases.get(self.region, 0) + 1


def browse(url: str, profile: Path, screenshot: Path | None = None) -> str:
    args = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1000",
            f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    run = subprocess.run([*args, url], capture_output=True, text=True, timeout=120)
    return run.stdout


async def test_the_dashboard_shows_real_figures_in_english_and_arabic(tmp_path: Path, nats_server: Any) -> None:
    configs = write_federation(tmp_path, REGIONS, nats_server.url)
    expected = {}
    for region, downs in (("eu-west-1", {3: 6, 10: 24}), ("us-east-1", {5: 2})):
        history = tmp_path / f"{region}.sqlite"
        daily = record(history, region, downs)
        expected[region] = sum(daily) / len(daily)
        data = yaml.safe_load(configs[region].read_text())
        # Only the recorded month: no live probe of this host (loaded by other tests) is an SLI here.
        data["sla"] = {"history": str(history), "probes": ["none"]}
        configs[region].write_text(yaml.safe_dump(data))
    shots = os.environ.get("SLA_SCREENSHOTS")
    async with running_daemons(configs) as daemons:
        port = daemons["eu-west-1"].http.bound_port
        for lang in ("en", "ar"):
            url = f"http://127.0.0.1:{port}/sla?lang={lang}"
            dom = await anyio.to_thread.run_sync(browse, url, tmp_path / f"profile-{lang}")
            assert 'data-loaded="yes"' in dom, dom[-3000:]
            page = Sections()
            page.feed(dom)
            assert page.html_dir == ("rtl" if lang == "ar" else "ltr")
            assert set(page.uptime) == set(REGIONS)  # us-east-1's bars came over the bus
            for region, want in expected.items():
                assert page.uptime[region] == pytest.approx(want, abs=1e-6), region
                assert page.canvases[region] == 1
            label = "التوافر" if lang == "ar" else "uptime"
            assert re.search(label + r" 9\d[.,٫]\d{3}", dom) or label in dom
            if shots:
                await anyio.to_thread.run_sync(browse, url, tmp_path / f"shot-{lang}",
                                               Path(shots) / f"sla-dashboard-{lang}.png")

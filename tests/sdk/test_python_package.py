"""The meshd-partner wheel ships what the command needs outside this checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk" / "python"


def test_the_wheel_has_the_catalogs_the_types_marker_and_the_command(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "wheel", "--no-deps",
                    "-w", str(tmp_path), str(SDK)], check=True, cwd=tmp_path, timeout=240)
    wheel = next(tmp_path.glob("meshd_partner-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for lang in ("en", "fr", "es", "de", "ar"):
        assert f"meshd_partner/locales/{lang}.json" in names
    assert "meshd_partner/py.typed" in names and "meshd_partner/cli.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "meshd-partner = meshd_partner.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    # nothing of meshd itself: a partner installs the SDK without the daemon
    assert [line for line in metadata.splitlines() if line.startswith("Requires-Dist")] == ["Requires-Dist: httpx>=0.27"]

"""``check-config`` refuses a KMS declared outside the region's jurisdiction (``keys.kms.jurisdiction``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.testing import write_federation


def _with_kms(tmp_path: Path, kms: dict[str, object]) -> Path:
    config = write_federation(tmp_path, ["eu-west-1", "us-east-1"], "nats://127.0.0.1:4222")["eu-west-1"]
    data = yaml.safe_load(config.read_text())
    data["keys"] = {"kms": kms}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def test_a_kms_in_another_jurisdiction_is_refused_with_file_line_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A provider no plugin offers: refused before anything tries to open it.
    config = _with_kms(tmp_path, {"provider": "vault-transit", "jurisdiction": "US",
                                  "settings": {"url": "https://vault.us.example", "key": "meshd"}})
    assert main(["check-config", str(config)]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    line = next(n for n, row in enumerate(config.read_text().splitlines(), 1) if "jurisdiction: US" in row)
    assert f"{config}:{line}: keys.kms.jurisdiction" in text
    assert "declared in jurisdiction US" in text and "eu-west-1 is in EU" in text and "Traceback" not in text


def test_a_kms_in_the_region_s_jurisdiction_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _with_kms(tmp_path, {"provider": "local", "jurisdiction": "EU"})
    assert main(["check-config", str(config)]) == 0, capsys.readouterr()


def test_a_jurisdiction_is_a_two_letter_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _with_kms(tmp_path, {"provider": "local", "jurisdiction": "europe"})
    assert main(["check-config", str(config)]) == 2
    out = capsys.readouterr()
    assert "keys.kms.jurisdiction" in out.out + out.err

"""``meshd init``: a federation directory from a region map.

For every region it writes a daemon config, an Ed25519 signing key (0600) and
a NATS password (0600); for the federation, the trust bundle of all public
keys and a nats-server config with JetStream and one user per region that may
publish only as itself. Shared files plugins read (DR pairs, alert routes...)
are copied from beside the region map.

What it writes runs as it is: each config meters the sample meters (when
there is a tenant directory), and the copy of the alert routing file has its
receivers' URLs commented out, so that a fresh federation logs its alerts
instead of sending them to the sample's placeholder URLs.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from .config import DEFAULT_HTTP_PORT, RegionMap, load_model_file
from .identity import generate_key, key_id, public_key_b64, write_private_key
from .logonly import has_literal_urls, log_only_routes
from .natsserver import authorization_block, render_config


@dataclass
class InitResult:
    out: Path
    regions: list[str]
    configs: dict[str, Path]
    nats_conf: Path
    copied: list[str]
    log_only_routes: bool = False
    """The routing file was written with its receivers' URLs commented out."""
    meters: bool = False
    """The configs meter the sample meters."""


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _dump(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


ROUTES_FILE = "alert_routes.yaml"

SAMPLE_METERS = """
# Usage metering (docs/metering.md): the sample meters of etc/meshd.yaml. Give every
# region the same list; `meshd reload` applies a change to the meters.
metering:
  meters:
    api_requests: {kind: COUNT, description: "API requests served"}
    storage_gb_hours: {kind: SUM, unit: GB-h}
    active_users: {kind: UNIQUE_COUNT}
  stream: {replicas: 1}          # 3 on a production NATS cluster
"""

SAMPLE_METER_NAMES = tuple(yaml.safe_load(SAMPLE_METERS)["metering"]["meters"])


class InitError(Exception):
    pass


def init_federation(*, federation: str, regions_file: Path, nats_url: str, out: Path,
                    http_base_port: int = DEFAULT_HTTP_PORT, state_dir_template: str = "state/{region}",
                    shared_files: Sequence[str] = (), force: bool = False,
                    lang: str = "en", monitor_port: int | None = None,
                    http_ports: Mapping[str, int] | None = None, samples: bool = True) -> InitResult:
    """Write the federation directory ``out``; raise :class:`InitError` or ConfigError on bad input.

    ``samples=False`` copies the routing file as it is and writes no meters (for a
    caller, such as a test, that brings its own receivers and metering settings).
    """
    region_map = load_model_file(regions_file, RegionMap)  # ConfigError names the bad key and line
    if (out / "trust.yaml").exists() and not force:
        raise InitError(f"{out} already holds a federation (trust.yaml); use --force to replace its keys")
    url = urlsplit(nats_url)
    if url.scheme not in ("nats", "tls") or not url.hostname or not url.port:
        raise InitError(f"--nats {nats_url!r}: expected nats://HOST:PORT")
    out.mkdir(parents=True, exist_ok=True)

    names = list(region_map.regions)
    shutil.copyfile(regions_file, out / "region_map.yaml")
    copied = []
    log_only = False
    for name in ("tenants.yaml", *shared_files):
        src = regions_file.parent / name
        if not src.is_file():
            continue
        text = src.read_text() if name == ROUTES_FILE and samples else ""
        if text and has_literal_urls(text):
            (out / name).write_text(log_only_routes(text))
            log_only = True
        else:
            shutil.copyfile(src, out / name)
        copied.append(name)
    # Metering keeps usage in each tenant's residency: it needs the tenant directory.
    meters = samples and "tenants.yaml" in copied

    trust: dict[str, object] = {"federation": federation, "keys": {}}
    passwords: dict[str, str] = {}
    configs: dict[str, Path] = {}
    for i, region in enumerate(names):
        key = generate_key()
        write_private_key(key, out / "keys" / f"{region}.key")
        trust["keys"][region] = {"key_id": key_id(key.public_key()),  # type: ignore[index]
                                 "public_key": public_key_b64(key.public_key())}
        passwords[region] = secrets.token_urlsafe(24)
        _write_secret(out / "secrets" / f"{region}.nats-password", passwords[region] + "\n")
        config = {
            "federation": federation,
            "region": region,
            "state_dir": state_dir_template.format(region=region),
            "region_map": "region_map.yaml",
            **({"tenants": "tenants.yaml"} if "tenants.yaml" in copied else {}),
            "lang": lang,
            "identity": {"private_key": f"keys/{region}.key", "trust_bundle": "trust.yaml"},
            "nats": {"servers": [nats_url], "user": region,
                     "password_file": f"secrets/{region}.nats-password"},
            "http": {"listen": "127.0.0.1", "port": (http_ports or {}).get(region, http_base_port + i)},
        }
        path = out / f"{region}.yaml"
        path.write_text(f"# meshd daemon config for {region} (written by `meshd init`)\n" + _dump(config)
                        + (SAMPLE_METERS if meters else ""))
        configs[region] = path

    (out / "trust.yaml").write_text(
        "# Every region's Ed25519 public key. Give every region the same file.\n" + _dump(trust)
    )
    nats_conf = out / "nats-server.conf"
    _write_secret(
        nats_conf,
        "# nats-server config for federation " + federation + " (written by `meshd init`).\n"
        "# It holds the regions' NATS passwords: keep it mode 0600.\n"
        "# For production, run a 3- or 5-node cluster (see the README's topology section).\n"
        + render_config(
            name=f"{federation}-1", host=url.hostname, port=url.port,
            monitor_port=monitor_port or (url.port + 4000 if url.port + 4000 < 65536 else 8222),
            store_dir=out / "nats-js", authorization=authorization_block(
                federation, passwords,
                # Each region kept off the other jurisdictions' customer data (docs/tenants.md).
                jurisdictions={name: r.jurisdiction for name, r in region_map.regions.items()}),
        ),
    )
    return InitResult(out, names, configs, nats_conf, copied, log_only, meters)

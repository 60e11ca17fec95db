"""Signed evidence: each region signs what its checks looked at; anyone with the trust bundle can verify it.

A region turns each check's outcome into one canonical JSON document
(``<region>/<check id>.json``) and signs a manifest of their SHA-256 hashes
with its Ed25519 key. The documents and the manifest travel as exact text,
so the files written by ``meshd audit --evidence DIR`` are byte for byte
what the region signed; ``meshd audit verify-evidence DIR`` checks every
signature against the trust bundle and every hash, and names what changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshd.identity import Signer, TrustStore

FORMAT = "meshd-audit-evidence/1"
MANIFEST = "manifest.json"
_DOMAIN = b"meshd audit evidence manifest\n"
"""Signed before the manifest so an evidence signature can never pass for a bus envelope's, nor one for it."""
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sign_region(signer: Signer, federation: str, region: str, generated_at: str,
                outcomes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The region's evidence bundle: ``{"documents": {name: text}, "manifest": text, "signature", "key_id"}``."""
    documents = {}
    for outcome in outcomes:
        name = f"{region}/{outcome['id']}.json"
        documents[name] = canonical({"federation": federation, "region": region, "collected_at": generated_at,
                                     **{k: outcome[k] for k in ("id", "title", "severity", "status", "detail")},
                                     "evidence": outcome.get("evidence") or {}})
    manifest = canonical({"format": FORMAT, "federation": federation, "region": region,
                          "generated_at": generated_at, "key_id": signer.key_id,
                          "files": {name: sha256(text) for name, text in sorted(documents.items())}})
    signature = base64.b64encode(signer.sign(_DOMAIN + manifest.encode())).decode()
    return {"documents": documents, "manifest": manifest, "signature": signature, "key_id": signer.key_id}


class EvidenceError(Exception):
    """Evidence that cannot be written as sent (a bad file name from a region)."""


def write_evidence(directory: Path, federation: str, bundles: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """Write every region's documents and one manifest.json holding each region's signed manifest."""
    written = []
    regions = {}
    for region, bundle in sorted(bundles.items()):
        if not _SAFE.match(region):
            raise EvidenceError(f"region name {region!r} cannot be a directory name")
        for name, text in sorted(bundle["documents"].items()):
            parts = name.split("/")
            if len(parts) != 2 or parts[0] != region or not _SAFE.match(parts[1]):
                raise EvidenceError(f"region {region} sent an evidence file named {name!r}")
            path = directory / region / parts[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode())
            written.append(path)
        regions[region] = {"manifest": bundle["manifest"], "signature": bundle["signature"],
                           "key_id": bundle["key_id"]}
    directory.mkdir(parents=True, exist_ok=True)
    top = directory / MANIFEST
    top.write_text(canonical({"format": FORMAT, "federation": federation, "regions": regions}))
    return [top, *written]


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def verify_evidence(directory: Path, trust: TrustStore) -> tuple[list[Problem], int]:
    """Every problem found (an empty list: all verified) and the number of files verified."""
    top = directory / MANIFEST
    try:
        data = json.loads(top.read_text())
        regions = data["regions"]
        if data.get("format") != FORMAT or not isinstance(regions, dict):
            raise ValueError(f"not a {FORMAT} manifest")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [Problem(str(top), f"unreadable manifest: {exc}")], 0
    problems: list[Problem] = []
    listed: set[str] = {MANIFEST}
    verified = 0
    for region, entry in sorted(regions.items()):
        try:
            text, signature = str(entry["manifest"]), base64.b64decode(entry["signature"], validate=True)
            manifest = json.loads(text)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(Problem(str(top), f"region {region}: unreadable manifest entry ({exc})"))
            continue
        if region not in trust:
            problems.append(Problem(str(top), f"region {region} is not in the trust bundle"))
            continue
        if manifest.get("region") != region or not trust.verify(region, str(manifest.get("key_id")),
                                                                 _DOMAIN + text.encode(), signature):
            problems.append(Problem(str(top), f"region {region}: the manifest's signature does not verify "
                                              "with its key in the trust bundle"))
            continue
        if manifest.get("federation") != trust.federation:
            problems.append(Problem(str(top), f"region {region}: manifest of federation "
                                              f"{manifest.get('federation')!r}, not {trust.federation!r}"))
        for name, digest in sorted(dict(manifest.get("files") or {}).items()):
            listed.add(name)
            path = directory / name
            try:
                actual = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                problems.append(Problem(str(path), f"missing or unreadable ({exc.strerror or exc})"))
                continue
            if actual != digest:
                problems.append(Problem(str(path), f"changed: SHA-256 {actual} but region {region} signed {digest}"))
            else:
                verified += 1
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_file() and rel not in listed:
            problems.append(Problem(str(path), "not in any signed manifest"))
    return problems, verified

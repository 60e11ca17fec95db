"""Configuration: pydantic models, YAML loading, and errors that name file:line:key.

A regional daemon reads one YAML file (``/etc/meshd/<region>.yaml``) that points
at the federation's shared files: the region map and the trust bundle, plus any
file a plugin adds (DR pairs, alert routes, billing matrix...). Relative paths
are resolved against the directory of the file that names them.

Every error is collected, not just the first, and carries the file, the key
path and the line, so ``meshd check-config`` can list them all at once.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    ValidationInfo,
    create_model,
)

from .durations import Duration, Size
from .yamlsource import KeyPath, Source, YamlError, format_keypath, load_yaml

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
"""Region and federation names: one NATS subject token, no dots or wildcards."""

Name = Annotated[str, Field(pattern=NAME_PATTERN)]


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in one file: where it is and what is wrong."""

    file: Path
    keypath: KeyPath
    message: str
    line: int | None = None
    code: str = "invalid"
    params: tuple[tuple[str, str], ...] | None = None
    """For a code of :data:`TRANSLATED_ERRORS`: (name, value) pairs its catalog message names
    (pairs, not a dict, so that an issue stays hashable)."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        return f"{where}: {format_keypath(self.keypath)}: {self.message}"


class ConfigError(Exception):
    """One or more :class:`ConfigIssue`; its message lists them all."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def _issue_from_yaml_error(exc: YamlError) -> ConfigIssue:
    return ConfigIssue(exc.path, (), exc.message, exc.line, code="yaml")


UNION_TAGS = {"tenants-file", "tenants-registry"}
"""The tags of our own discriminated unions: in an error's ``loc``, never a key of the data."""


def _data_keypath(data: Any, loc: tuple[Any, ...]) -> KeyPath:
    """Map a pydantic error location onto the key path in the YAML data.

    pydantic puts validator and union tags into ``loc``; keep only the parts
    that index the data.
    """
    out: list[str | int] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and isinstance(part, str) and not out[-1:] == [part]:
            # A missing key: name it, there is no deeper data.
            if not part.startswith(("function-", "union[", "tagged-union[", "json-or-python[")) and part not in UNION_TAGS:
                out.append(part)
                break
    return tuple(out)


TRANSLATED_ERRORS: dict[str, tuple[str, ...]] = {
    # pydantic error type -> the names of its context values the message uses.
    # Each has a message ``cli.config_error.<type>`` in every language; other types
    # (a validator's own ValueError...) keep pydantic's English text.
    "extra_forbidden": (), "missing": (),
    "int_parsing": (), "int_type": (), "int_from_float": (),
    "float_parsing": (), "float_type": (), "decimal_parsing": (), "decimal_type": (),
    "bool_parsing": (), "bool_type": (), "string_type": (), "dict_type": (), "list_type": (),
    "greater_than": ("gt",), "greater_than_equal": ("ge",), "less_than": ("lt",), "less_than_equal": ("le",),
    "literal_error": ("expected",), "enum": ("expected",), "string_pattern_mismatch": ("pattern",),
    "string_too_short": ("min_length",), "string_too_long": ("max_length",),
    "too_short": ("min_length",), "too_long": ("max_length",),
}


def _params(err: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    ctx = err.get("ctx") or {}
    params = {name: str(ctx.get(name, "")) for name in TRANSLATED_ERRORS[err["type"]]}
    if "expected" in params:
        # pydantic joins the choices with an English "or": list them with commas instead.
        params["expected"] = params["expected"].replace(" or ", ", ")
    return tuple(params.items())


def issues_from_validation(source: Source, exc: ValidationError, prefix: KeyPath = ()) -> list[ConfigIssue]:
    """Turn a pydantic error into issues located in ``source``.

    Common error types carry a catalog key (``cli.config_error.<type>``) and its values,
    so the CLI says them in the user's language; the message is the English one.
    """
    from .i18n import Translator

    english = Translator("en")
    issues = []
    data: Any = source.data
    for part in prefix:
        if isinstance(data, dict):
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int):
            data = data[part]
        else:
            data = None
    for err in exc.errors(include_url=False):
        keypath = prefix + _data_keypath(data, tuple(err["loc"]))
        message, params = err["msg"].removeprefix("Value error, "), None
        if err["type"] in TRANSLATED_ERRORS:
            params = _params(err)
            message = english(f"cli.config_error.{err['type']}", **dict(params))
        issues.append(ConfigIssue(source.path, keypath, message, source.line_of(keypath), code=err["type"],
                                  params=params))
    return issues


# ---------------------------------------------------------------- field types


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    return value


RelPath = Annotated[Path, AfterValidator(_resolve_path)]
"""A path; relative ones are resolved against the directory of the file that holds it."""


def _secret(value: Any) -> str:
    # PlainValidator keeps an EncryptedValue (a str subclass) as it is, so the
    # keys plugin can decrypt it at the point of use.
    if not isinstance(value, str):
        raise ValueError("must be a string (plain, or !encrypted meshd:vN:...)")
    return value


Secret = Annotated[str, PlainValidator(_secret)]
"""A string that may be written ``!encrypted meshd:vN:...``; see ``Daemon.secret``."""


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, not silently ignored.

    Defaults are validated like written values, so a default ``RelPath`` is
    resolved against the config file's directory too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, defer_build=True)


# ---------------------------------------------------------------- daemon config


class NatsTLS(StrictModel):
    ca_file: RelPath | None = None
    cert_file: RelPath | None = None
    key_file: RelPath | None = None
    verify: bool = True
    handshake_first: bool = False


def _nats_url(value: str) -> str:
    if not re.match(r"^(nats|tls|ws|wss)://[^\s/]+(:\d+)?/?$", value):
        raise ValueError(f"{value!r} is not a NATS URL such as nats://host:4222")
    return value


class NatsConfig(StrictModel):
    """How this daemon reaches the bus. At most one kind of credential."""

    servers: list[Annotated[str, AfterValidator(_nats_url)]] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1
    )
    user: str | None = None
    password: Secret | None = None
    password_file: RelPath | None = None
    token: Secret | None = None
    token_file: RelPath | None = None
    nkey_seed_file: RelPath | None = None
    creds_file: RelPath | None = None
    tls: NatsTLS | None = None
    connect_timeout: Duration = 2.0
    reconnect_wait: Duration = 0.5
    # Faster than nats-py's 2-minute default, so that a silently dead TCP path
    # makes the daemon isolated within seconds instead of minutes.
    ping_interval: Duration = 2.0
    max_outstanding_pings: int = Field(default=3, ge=1)
    inbox_prefix: str | None = None

    def model_post_init(self, _context: Any) -> None:
        kinds = [
            name
            for name, on in (
                ("password", self.password is not None or self.password_file is not None),
                ("token", self.token is not None or self.token_file is not None),
                ("nkey_seed_file", self.nkey_seed_file is not None),
                ("creds_file", self.creds_file is not None),
            )
            if on
        ]
        if len(kinds) > 1:
            raise ValueError(f"choose one kind of NATS credential, not {' and '.join(kinds)}")
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")


class IdentityConfig(StrictModel):
    """This region's signing key and the federation's trust bundle."""

    private_key: RelPath
    trust_bundle: RelPath


DEFAULT_HTTP_PORT = 7420
"""Outside 9100-9999, the range the Prometheus project hands out to exporters
(9100 itself is node_exporter's, which often runs on the same host)."""


class HttpConfig(StrictModel):
    """The local HTTP endpoint: /healthz, /metrics, /status and the admin API."""

    listen: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_HTTP_PORT, ge=0, le=65535)


class BusConfig(StrictModel):
    clock_skew: Duration = 30.0
    max_payload: Size = 256 * 1024
    # How many recent sequence numbers per sender are remembered to catch replays
    # that arrive out of order (an IPsec-style sliding window).
    replay_window: int = Field(default=4096, ge=64)


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = "auto"


class PluginsConfig(StrictModel):
    disabled: list[str] = Field(default_factory=list)


SYSTEMD_CONFIG_DIR = Path("/etc/meshd")
"""Where the systemd unit reads its instance's config (``--config /etc/meshd/%i.yaml``)."""
SYSTEMD_STATE_ROOT = Path("/var/lib/meshd")
"""The parent of the directory the unit creates for its instance (``StateDirectory=meshd/%i``)."""


def default_state_dir(config_path: Path) -> Path | None:
    """The ``state_dir`` of a config that names none: the unit's state directory for ``/etc/meshd/<name>.yaml``.

    None for a config anywhere else, where ``state_dir`` is required.
    """
    path = Path(os.path.abspath(config_path))
    if path.parent == SYSTEMD_CONFIG_DIR and path.suffix == ".yaml":
        return SYSTEMD_STATE_ROOT / path.stem
    return None


class TenantRegistryConfig(StrictModel):
    """``tenants: {registry: kv, ...}``: the tenant directory is the JetStream KV registry (:mod:`meshd.tenantkv`)."""

    registry: Literal["kv"]
    replicas: int = Field(default=1, ge=1, le=5)
    """Replicas of the global bucket ``meshd_tenants`` (3 in production)."""
    history: int = Field(default=10, ge=1, le=64)
    """Revisions kept per tenant record."""
    customer_replicas: int | None = Field(default=None, ge=1, le=5)
    """Replicas of this jurisdiction's customer bucket; ``replicas`` when unset."""
    placement: dict[Annotated[str, Field(pattern=r"^[A-Z]{2}$")], list[str]] = Field(default_factory=dict)
    """Server tags per jurisdiction: where ``meshd_customers_<J>`` may be stored (e.g. ``{EU: [eu]}``)."""
    ready_timeout: Duration = 5.0
    """Seconds a write waits for this region's copy to show it before returning anyway."""


def _tenants_kind(value: Any) -> str:
    return "tenants-registry" if isinstance(value, dict | TenantRegistryConfig) else "tenants-file"


# Discriminated, so that a mistake in one form is reported once, not also as "not a valid path".
TenantsSetting = Annotated[
    Annotated[RelPath, Tag("tenants-file")] | Annotated[TenantRegistryConfig, Tag("tenants-registry")],
    Discriminator(_tenants_kind),
]


class DaemonConfig(StrictModel):
    """The settings of one regional daemon (``/etc/meshd/<region>.yaml``)."""

    federation: Name
    region: Name
    state_dir: RelPath
    """Required, except in ``/etc/meshd/<name>.yaml`` (see :func:`default_state_dir`)."""
    region_map: RelPath = Path("region_map.yaml")
    tenants: TenantsSetting | None = None
    """The tenant directory, for plugins that need residency; optional.

    A path reads tenants.yaml (read-only); ``{registry: kv, ...}`` opens the JetStream KV registry.
    """
    identity: IdentityConfig
    nats: NatsConfig = Field(default_factory=NatsConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    bus: BusConfig = Field(default_factory=BusConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    lang: Literal["en", "fr", "es", "de", "ar"] = "en"


# ---------------------------------------------------------------- federation files


class Coordinates(StrictModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Region(StrictModel):
    """One region of the federation, as region_map.yaml describes it."""

    location: str
    coordinates: Coordinates
    jurisdiction: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    compliance: list[str] = Field(default_factory=list)
    endpoint: Annotated[str, Field(pattern=r"^https?://\S+$")]
    capacity: int = Field(gt=0)
    weight: int = Field(default=100, ge=0)
    carbon_intensity: float | None = Field(default=None, ge=0, description="grid gCO2e/kWh")


class RegionMap(StrictModel):
    regions: dict[Name, Region] = Field(min_length=1)


class TrustEntry(StrictModel):
    key_id: str
    public_key: str


class TrustBundle(StrictModel):
    """Every region's Ed25519 public key: who may speak for which region."""

    federation: Name
    keys: dict[Name, TrustEntry]


M = TypeVar("M", bound=BaseModel)


def load_model_file(path: str | os.PathLike[str], model: type[M]) -> M:
    """Load one YAML file into ``model``; raise :class:`ConfigError` naming every problem."""
    path = Path(path)
    try:
        source = load_yaml(path)
    except YamlError as exc:
        raise ConfigError([_issue_from_yaml_error(exc)]) from None
    return validate_source(source, model)


def validate_source(source: Source, model: type[M]) -> M:
    if not isinstance(source.data, dict):
        raise ConfigError([ConfigIssue(source.path, (), "expected a mapping of keys at the top level", 1)])
    try:
        return model.model_validate(source.data, context={"base_dir": source.path.parent})
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(source, exc)) from None


# ---------------------------------------------------------------- the loaded whole


@dataclass
class LoadedConfig:
    """A daemon's config with the federation files it names, all validated."""

    path: Path
    daemon: DaemonConfig
    region_map: RegionMap
    trust: TrustBundle
    source: Source
    plugin_sections: dict[str, BaseModel] = field(default_factory=dict)
    tenants: Any = None
    """The :class:`meshd.tenantdir.TenantDirectory`, or None when the config names none.

    Callers read ``tenants.tenants[id]`` and ``tenants.residency_regions(id, region_map)``.
    """

    @property
    def region(self) -> str:
        return self.daemon.region

    @property
    def federation(self) -> str:
        return self.daemon.federation

    def plugin(self, name: str) -> Any:
        """The validated config section of plugin ``name`` (defaults if absent)."""
        return self.plugin_sections[name]

    def line_of(self, keypath: KeyPath) -> int | None:
        return self.source.line_of(keypath)


def check_private_key_file(path: Path) -> str | None:
    """Why ``path`` is not a usable private key file, or None if it is."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "file not found"
    except PermissionError:
        return "permission denied"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_mode & 0o077:
        return f"mode {stat.S_IMODE(st.st_mode):04o} lets others read it; run chmod 600 {path}"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return None


def validate_daemon_source(source: Source, plugin_models: dict[str, type[BaseModel]]) -> DaemonConfig:
    """Validate one daemon config document with the plugins' sections, without reading the files it names."""
    fields: dict[str, Any] = {}
    for name, section in plugin_models.items():
        fields[name] = (section, Field(default_factory=section))
        if isinstance(source.data, dict) and source.data.get(name) is None:
            # Validate an absent section too, so its defaults get the same
            # treatment as written values (relative paths resolved here).
            source.data[name] = {}
    if isinstance(source.data, dict) and "state_dir" not in source.data:
        default = default_state_dir(source.path)
        if default is not None:
            source.data["state_dir"] = str(default)
    model: type[DaemonConfig] = (create_model("DaemonConfigWithPlugins", __base__=DaemonConfig, **fields)
                                 if fields else DaemonConfig)
    return validate_source(source, model)


def load_config(path: str | os.PathLike[str], plugin_models: dict[str, type[BaseModel]] | None = None) -> LoadedConfig:
    """Load and cross-check a daemon config, its region map and trust bundle.

    ``plugin_models`` are the sections plugins add (``meshd_config_models``);
    each is validated under its plugin's name. Raises :class:`ConfigError`
    listing every issue found.
    """
    from .identity import load_private_key, public_key_b64  # avoid a cycle at import

    path = Path(path)
    plugin_models = plugin_models or {}
    try:
        source = load_yaml(path)
    except YamlError as exc:
        raise ConfigError([_issue_from_yaml_error(exc)]) from None

    daemon = validate_daemon_source(source, plugin_models)
    sections = {name: getattr(daemon, name) for name in plugin_models}

    issues: list[ConfigIssue] = []

    def load_into(file: Path, model_cls: type[M], keypath: KeyPath) -> M | None:
        try:
            return load_model_file(file, model_cls)
        except ConfigError as exc:
            for issue in exc.issues:
                if issue.code == "yaml" and issue.message == "file not found":
                    issues.append(
                        ConfigIssue(path, keypath, f"{file}: file not found", source.line_of(keypath), "missing_file")
                    )
                else:
                    issues.append(issue)
            return None

    from .tenants import TenantFile

    region_map = load_into(daemon.region_map, RegionMap, ("region_map",))
    tenants = load_into(daemon.tenants, TenantFile, ("tenants",)) if isinstance(daemon.tenants, Path) else None
    if isinstance(daemon.tenants, TenantRegistryConfig) and region_map is not None:
        jurisdictions = {r.jurisdiction for r in region_map.regions.values()}
        for code in sorted(set(daemon.tenants.placement) - jurisdictions):
            where = ("tenants", "placement", code)
            issues.append(ConfigIssue(path, where, f"no region of the map is in jurisdiction {code!r}",
                                      source.line_of(where)))
    if tenants is not None and region_map is not None:
        jurisdictions = {r.jurisdiction for r in region_map.regions.values()}
        for name, tenant in tenants.tenants.items():
            if tenant.residency not in jurisdictions:
                issues.append(ConfigIssue(daemon.tenants, ("tenants", name, "residency"),  # type: ignore[arg-type]
                                          f"no region of the map is in jurisdiction {tenant.residency!r}", None))
            if tenant.home and (tenant.home not in region_map.regions or
                                region_map.regions[tenant.home].jurisdiction != tenant.residency):
                issues.append(ConfigIssue(daemon.tenants, ("tenants", name, "home"),  # type: ignore[arg-type]
                                          f"home {tenant.home!r} is not a region in {tenant.residency}", None))
    trust = load_into(daemon.identity.trust_bundle, TrustBundle, ("identity", "trust_bundle"))

    if region_map is not None and daemon.region not in region_map.regions:
        issues.append(
            ConfigIssue(
                path,
                ("region",),
                f"region {daemon.region!r} is not in {daemon.region_map.name} "
                f"(known: {', '.join(sorted(region_map.regions))})",
                source.line_of(("region",)),
            )
        )
    if trust is not None:
        tb = daemon.identity.trust_bundle
        if trust.federation != daemon.federation:
            issues.append(
                ConfigIssue(
                    tb, ("federation",), f"trust bundle is for federation {trust.federation!r}, "
                    f"this daemon is in {daemon.federation!r}", None
                )
            )
        if region_map is not None:
            for name in sorted(set(region_map.regions) - set(trust.keys)):
                issues.append(ConfigIssue(tb, ("keys",), f"region {name!r} of the region map has no key here", None))

    why = check_private_key_file(daemon.identity.private_key)
    if why:
        keypath = ("identity", "private_key")
        issues.append(ConfigIssue(path, keypath, f"{daemon.identity.private_key}: {why}", source.line_of(keypath)))
    elif trust is not None and daemon.region in trust.keys:
        try:
            key = load_private_key(daemon.identity.private_key)
        except ValueError as exc:
            keypath = ("identity", "private_key")
            issues.append(ConfigIssue(path, keypath, f"{daemon.identity.private_key}: {exc}", source.line_of(keypath)))
        else:
            if public_key_b64(key.public_key()) != trust.keys[daemon.region].public_key:
                keypath = ("identity", "private_key")
                issues.append(
                    ConfigIssue(
                        path, keypath,
                        f"this key does not match the trust bundle's public key for {daemon.region}",
                        source.line_of(keypath),
                    )
                )

    for name, secret_file in (("password_file", daemon.nats.password_file), ("token_file", daemon.nats.token_file)):
        if secret_file is not None:
            why = check_private_key_file(secret_file)
            if why:
                keypath = ("nats", name)
                issues.append(ConfigIssue(path, keypath, f"{secret_file}: {why}", source.line_of(keypath)))

    if issues:
        raise ConfigError(issues)
    assert region_map is not None and trust is not None
    return LoadedConfig(path, daemon, region_map, trust, source, sections, _directory(daemon, region_map, tenants))


def _directory(daemon: DaemonConfig, region_map: RegionMap, file: Any) -> Any:
    """The tenant directory the config names: tenants.yaml read-only, or the KV registry (opened by the daemon)."""
    from .tenantkv import KvTenantDirectory
    from .tenantyaml import YamlTenantDirectory

    jurisdiction = region_map.regions[daemon.region].jurisdiction
    if file is not None:
        return YamlTenantDirectory(file, source=daemon.tenants, jurisdiction=jurisdiction)
    if isinstance(daemon.tenants, TenantRegistryConfig):
        return KvTenantDirectory(daemon.tenants, jurisdiction=jurisdiction, region=daemon.region)
    return None

"""Usage events: their CloudEvents-like shape, validation and rejection reasons.

One event is a JSON object::

    {"id": "9f1c...", "source": "//billing/api-gw", "tenant": "acme-eu",
     "meter": "api_calls", "value": 3, "time": "2026-10-04T12:00:00Z",
     "specversion": "1.0", "type": "com.example.usage"}

``id`` and ``source`` identify it (CloudEvents: unique per source), so
``(source, id)`` is the dedup key everywhere. A NATS message holds one event
or a JSON array of events (the CloudEvents batch format). The same checks run
in the SDK (before publishing, without the daemon's meters and tenants) and
in the daemon (with them); a failed check is a :class:`Rejection` with a
:class:`Reason`, never an exception.

Values are exact: JSON numbers are parsed as :class:`~decimal.Decimal`
(never float) and strings holding a decimal are accepted too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from enum import Enum
from typing import Any, NamedTuple

from .config import MeterKind

MAX_ID = 256
MAX_SOURCE = 512
MAX_TENANT = 128
MAX_METER = 64
MAX_UNIQUE_VALUE = 256
MAX_DIGITS_BEFORE_POINT = 30
MAX_DECIMAL_PLACES = 18
"""Bounds that keep every sum exact within the ledger's 60-digit decimal context."""
EXACT = Context(prec=60, traps=[InvalidOperation, Inexact, Overflow])
"""Ledger arithmetic: an inexact result raises instead of rounding silently."""
_WIDE = Context(prec=60)
_QUANTUM = Decimal(1).scaleb(-MAX_DECIMAL_PLACES)
_ONE = Decimal(1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Module constants: an Enum member looked up on its class costs a tenth of a microsecond, per event.
_COUNT, _SUM, _UNIQUE_COUNT = MeterKind.COUNT, MeterKind.SUM, MeterKind.UNIQUE_COUNT


class Reason(str, Enum):
    """Why an event was not counted; the label of ``meshd_metering_events_rejected_total``."""

    MALFORMED_JSON = "malformed_json"
    MISSING_ID = "missing_id"
    MISSING_SOURCE = "missing_source"
    MISSING_TENANT = "missing_tenant"
    MISSING_METER = "missing_meter"
    MISSING_VALUE = "missing_value"
    BAD_FIELD = "bad_field"
    BAD_TIME = "bad_time"
    BAD_VALUE = "bad_value"
    UNKNOWN_METER = "unknown_meter"
    NEGATIVE_VALUE = "negative_value"
    FUTURE_TIME = "future_time"
    TOO_OLD = "too_old"
    UNKNOWN_TENANT = "unknown_tenant"
    NOT_RESIDENT = "not_resident"


class UsageEvent(NamedTuple):
    """A valid event. ``value`` is a Decimal for numeric meters, a str for UNIQUE_COUNT, None for COUNT."""

    id: str
    source: str
    tenant: str
    meter: str
    value: Decimal | str | None
    time: float
    """Unix seconds: the event's own time, or the time the stream stored it when it had none."""


_new_event = tuple.__new__
"""Builds a UsageEvent without the Python-level ``__new__`` a NamedTuple adds (one frame less per event)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str
    index: int = 0
    id: str | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "reason": self.reason.value, "detail": self.detail}
        if self.id is not None:
            out["id"] = self.id
        if self.source is not None:
            out["source"] = self.source
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rejection:
        try:
            reason = Reason(data.get("reason"))
        except ValueError:
            reason = Reason.BAD_FIELD
        return cls(reason, str(data.get("detail", "")), int(data.get("index", 0)), data.get("id"), data.get("source"))


TenantCheck = Callable[[str], "tuple[Reason, str] | None"]


@dataclass(frozen=True)
class Policy:
    """What the validator knows beyond the event itself.

    The SDK knows little (``meters=None``: any meter name passes); the daemon
    knows its meters, its tenants' residency and the time window.
    """

    meters: Mapping[str, MeterKind] | None = None
    tenant_check: TenantCheck | None = None
    future_skew: float = 300.0
    max_age: float | None = None


class _Bad(Exception):
    def __init__(self, reason: Reason, detail: str):
        self.reason, self.detail = reason, detail


_DECIMAL_TEXT = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_PLAIN_DECIMAL = re.compile(rf"-?\d{{1,{MAX_DIGITS_BEFORE_POINT}}}(?:\.\d{{1,{MAX_DECIMAL_PLACES}}})?")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def decode_message(data: bytes) -> list[Any] | Rejection:
    """The events of one NATS message (an object or an array of objects), still unchecked."""
    try:
        obj = json.loads(data, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return Rejection(Reason.MALFORMED_JSON, f"not JSON: {str(exc)[:120]}")
    if isinstance(obj, dict):
        return [obj]
    if isinstance(obj, list):
        return obj
    return Rejection(Reason.MALFORMED_JSON, "expected an event object or a JSON array of events")


def _text(obj: Mapping[str, Any], name: str, missing: Reason, limit: int) -> str:
    value = obj.get(name)
    if type(value) is str and 0 < len(value) <= limit and value.isprintable():
        return value  # the hot path: one test per field
    if value is None or value == "":
        raise _Bad(missing, f"{name} is missing")
    if type(value) is not str:
        raise _Bad(Reason.BAD_FIELD, f"{name} must be a string")
    raise _Bad(Reason.BAD_FIELD, f"{name} must be printable and at most {limit} characters")


def parse_number(value: Any) -> Decimal:
    """An exact Decimal from a JSON number or decimal string; raise _Bad otherwise."""
    kind = type(value)
    if kind is str and len(value) <= MAX_DIGITS_BEFORE_POINT and value.isdigit() and value.isascii():
        return Decimal(value)  # the hottest path: a plain integer in a string, no pattern to run
    if kind is int:
        if abs(value) >= 10**MAX_DIGITS_BEFORE_POINT:
            raise _Bad(Reason.BAD_VALUE, f"value must be below 10^{MAX_DIGITS_BEFORE_POINT}")
        return Decimal(value)
    if kind is str:
        if _PLAIN_DECIMAL.fullmatch(value):
            return Decimal(value)  # the hot path: plain notation, visibly within bounds
        if not _DECIMAL_TEXT.fullmatch(value):
            raise _Bad(Reason.BAD_VALUE, "value must be a number or a decimal string such as \"12.5\"")
        try:
            value = Decimal(value)
        except InvalidOperation:
            raise _Bad(Reason.BAD_VALUE, "value is not a decimal number") from None
    elif kind is float:
        raise _Bad(Reason.BAD_VALUE, "value is a binary float; send a JSON number, a Decimal or a decimal string")
    elif kind is not Decimal:
        raise _Bad(Reason.BAD_VALUE, "value must be a number")
    if not value.is_finite():
        raise _Bad(Reason.BAD_VALUE, "value must be finite")
    if value and value.adjusted() >= MAX_DIGITS_BEFORE_POINT:
        raise _Bad(Reason.BAD_VALUE, f"value must be below 10^{MAX_DIGITS_BEFORE_POINT}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        exact = value.quantize(_QUANTUM, context=_WIDE)
        if exact != value:
            raise _Bad(Reason.BAD_VALUE, f"value has more than {MAX_DECIMAL_PLACES} decimal places")
        value = exact
    elif isinstance(exponent, int) and exponent > 0:
        value = value.quantize(_ONE, context=_WIDE)  # 1E+2 is stored and shown as 100
    return value


def _unique_value(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str and value and len(value) <= MAX_UNIQUE_VALUE and value.isprintable():
        return value
    raise _Bad(Reason.BAD_VALUE, f"a UNIQUE_COUNT value is a string (at most {MAX_UNIQUE_VALUE} characters) "
                                 "or an integer")


def parse_time(value: Any, cache: dict[str, float] | None = None) -> float:
    """Unix seconds from an RFC 3339 timestamp with a UTC offset."""
    if type(value) is not str:
        raise _Bad(Reason.BAD_TIME, "time must be an RFC 3339 string such as 2026-10-04T12:00:00Z")
    if cache is not None:
        got = cache.get(value)
        if got is not None:
            return got
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(Reason.BAD_TIME, f"time {value[:40]!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise _Bad(Reason.BAD_TIME, f"time {value[:40]!r} has no UTC offset (add Z or +00:00)")
    # What timestamp() computes for an aware datetime, at half its cost.
    ts = (parsed - _EPOCH).total_seconds()
    if cache is not None and len(cache) < 4096:
        cache[value] = ts
    return ts


Check = Callable[[Any, int], "UsageEvent | Rejection"]
"""Validates one decoded event (its index in the message for the rejection) against a bound policy."""


def check_event(obj: Any, ref: float, policy: Policy, index: int = 0,
                time_cache: dict[str, float] | None = None) -> UsageEvent | Rejection:
    """Validate one decoded event against ``policy``.

    ``ref`` is the reference time (Unix seconds): the moment the stream
    stored the message, in the daemon (so a redelivery gets the same
    verdict), or now, in the SDK. An event without ``time`` takes it.
    """
    return checker(ref, policy, time_cache)(obj, index)


def checker(ref: float, policy: Policy, time_cache: dict[str, float] | None = None) -> Check:
    """:func:`check_event` with ``ref`` and ``policy`` bound once for a message's events.

    The policy's fields and the time window are read here, not per event:
    a batch validates tens of thousands of events against the same ones.
    """
    future_skew, max_age = policy.future_skew, policy.max_age
    latest = ref + future_skew
    earliest, max_days = (None, 0.0) if max_age is None else (ref - max_age, max_age / 86400)
    meters, tenant_check = policy.meters, policy.tenant_check

    def check(obj: Any, index: int = 0) -> UsageEvent | Rejection:
        if type(obj) is not dict:
            return Rejection(Reason.MALFORMED_JSON, "an event must be a JSON object", index)
        get = obj.get
        event_id, source, tenant, meter = get("id"), get("source"), get("tenant"), get("meter")
        try:
            # One expression for the common case; the per-field checks name what is wrong otherwise.
            if not (type(event_id) is str and 0 < len(event_id) <= MAX_ID and event_id.isprintable()
                    and type(source) is str and 0 < len(source) <= MAX_SOURCE and source.isprintable()
                    and type(tenant) is str and 0 < len(tenant) <= MAX_TENANT and tenant.isprintable()
                    and type(meter) is str and 0 < len(meter) <= MAX_METER and meter.isprintable()):
                event_id = _text(obj, "id", Reason.MISSING_ID, MAX_ID)
                source = _text(obj, "source", Reason.MISSING_SOURCE, MAX_SOURCE)
                tenant = _text(obj, "tenant", Reason.MISSING_TENANT, MAX_TENANT)
                meter = _text(obj, "meter", Reason.MISSING_METER, MAX_METER)
            spec = get("specversion")
            if spec is not None and spec != "1.0":
                raise _Bad(Reason.BAD_FIELD, "specversion must be \"1.0\" when present")
            ctype = get("type")
            if ctype is not None and (type(ctype) is not str or len(ctype) > 256):
                raise _Bad(Reason.BAD_FIELD, "type must be a string of at most 256 characters when present")

            raw_time = get("time")
            when = ref if raw_time is None else parse_time(raw_time, time_cache)
            if when > latest:
                raise _Bad(Reason.FUTURE_TIME, f"time is {when - ref:.0f}s ahead (more than the "
                                               f"{future_skew:.0f}s skew allowed)")
            if earliest is not None and when < earliest:
                raise _Bad(Reason.TOO_OLD, f"time is older than the {max_days:g}-day limit")

            kind = None
            if meters is not None:
                kind = meters.get(meter)
                if kind is None:
                    raise _Bad(Reason.UNKNOWN_METER, f"no meter named {meter!r}")
            raw_value = get("value")
            value: Decimal | str | None
            if kind is _COUNT:
                value = None
            elif raw_value is None:
                if kind is not None:
                    raise _Bad(Reason.MISSING_VALUE, f"a {kind.value} meter needs a value")
                value = None
            elif kind is _UNIQUE_COUNT:
                value = _unique_value(raw_value)
            elif kind is None and type(raw_value) is str and not _DECIMAL_TEXT.fullmatch(raw_value):
                value = _unique_value(raw_value)  # the SDK does not know the kind; the daemon decides
            else:
                value = parse_number(raw_value)
                if kind is _SUM and value < 0:
                    raise _Bad(Reason.NEGATIVE_VALUE, "a SUM meter takes no negative values")

            if tenant_check is not None:
                verdict = tenant_check(tenant)
                if verdict is not None:
                    raise _Bad(*verdict)
        except _Bad as bad:
            raw_id, raw_source = get("id"), get("source")
            return Rejection(bad.reason, bad.detail, index, raw_id if type(raw_id) is str else None,
                             raw_source if type(raw_source) is str else None)
        return _new_event(UsageEvent, (event_id, source, tenant, meter, value, when))

    return check


def check_message(data: bytes, ref: float, policy: Policy,
                  time_cache: dict[str, float] | None = None) -> tuple[list[UsageEvent], list[Rejection]]:
    """Decode and validate every event of one message."""
    decoded = decode_message(data)
    if isinstance(decoded, Rejection):
        return [], [decoded]
    events: list[UsageEvent] = []
    rejected: list[Rejection] = []
    check = checker(ref, policy, time_cache)
    for index, obj in enumerate(decoded):
        result = check(obj, index)
        if type(result) is UsageEvent:
            events.append(result)
        else:
            rejected.append(result)  # type: ignore[arg-type]
    return events, rejected


# ---------------------------------------------------------------- identities


DEDUP_KEY_BYTES = 16


def dedup_key(source: str, event_id: str) -> bytes:
    """The 16-byte digest of (source, id) that the ledger remembers (validated fields hold no NUL)."""
    return hashlib.blake2b(f"{source}\x00{event_id}".encode(), digest_size=DEDUP_KEY_BYTES).digest()


def event_msg_id(source: str, event_id: str) -> str:
    """Nats-Msg-Id of a one-event message: derived from (source, id), header-safe and bounded."""
    return "ev-" + dedup_key(source, event_id).hex()


def batch_msg_id(pairs: Iterable[tuple[str, str]]) -> str:
    """Nats-Msg-Id of a batch: the same events in the same order give the same id, so a retry is dropped."""
    h = hashlib.blake2b(digest_size=16)
    for source, event_id in pairs:
        h.update(f"{source}\x00{event_id}\x01".encode())
    return "batch-" + h.hexdigest()


def encode(obj: Any) -> bytes:
    """JSON bytes with Decimals written as exact strings."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_default).encode()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def wire(event: UsageEvent) -> dict[str, Any]:
    """A valid event as it goes into the stream (its time made explicit)."""
    out: dict[str, Any] = {"id": event.id, "source": event.source, "tenant": event.tenant,
                           "meter": event.meter, "time": iso(event.time)}
    if event.value is not None:
        out["value"] = str(event.value)
    return out

"""The scenario format of tests/scenarios/ (README there) for the Python runner
(scenarios.py): keys, defaults, strict typed access to a step and its validation.

It is as strict as the Rust runner (broker/tests/scenarios/), which is the reference: unknown
keys are refused at every level (steps, expected entries, payload objects, version
relations, expect_error), every step has a deadline (its `timeout_ms` or the op's default),
payloads are compared as bytes (`show` only renders them for messages), and an error the
step expects only counts where the README says it may come. Failure texts follow the Rust
runner's, so the wrong scenarios of tests/scenarios/wrong/ name one reason for both."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict, Optional, Sequence, Tuple

DEFAULT_STEP_MS = 10_000  # a step without timeout_ms
DEFAULT_EVENTS_MS = 5_000  # expect_events without timeout_ms
DEFAULT_SCENARIO_MS = 60_000  # a scenario without timeout_ms
SAFETY_MS = 5_000  # slack of the outer deadline over a self-timed step's own
POLL_S = 0.005  # between reads of wait_until_cache_miss
MAX_NO_EVENT_MS = 10_000

TOP = {"$schema", "name", "description", "timeout_ms", "broker", "steps"}
# The brokers a scenario may ask for (README, "Brokers").
BROKERS = ("dev", "jwt")
COMMON = {"op", "comment", "expect_error", "timeout_ms"}
NS = {"client", "namespace"}
KEYS: Dict[str, set] = {
    "connect": {"as", "tenant", "token"},
    "close": {"client", "subscription"},
    "publish": NS | {"stream", "payload", "payloads", "ack"},
    "subscribe": NS | {"as", "stream", "from"},
    "expect_events": {"subscription", "payloads", "events", "any_order"},
    "expect_no_event": {"subscription", "within_ms"},
    "create_stream": NS | {"stream", "max_records", "max_bytes", "subscriber_buffer", "full_policy"},
    "create_cache": NS | {"cache", "max_bytes", "default_ttl_ms"},
    "create_group": NS | {"stream", "group", "from", "ack_timeout_ms", "max_deliveries"},
    "queue_pull": NS | {"stream", "group", "max", "wait_ms", "expect", "as"},
    "queue_ack": NS | {"stream", "group", "offsets", "expect_count"},
    "queue_nack": NS | {"stream", "group", "offsets", "expect_count", "delay_ms"},
    "queue_redrive": NS | {"stream", "group", "offsets", "expect_count"},
    "dead_letters": NS | {"stream", "group", "max", "expect", "as"},
    "cache_put": NS | {"cache", "key", "value", "ttl_ms", "if_absent", "if_version", "expect_version", "as"},
    "cache_get": NS | {"cache", "key", "expect", "expect_version", "as"},
    "cache_delete": NS | {"cache", "key", "expect_existed"},
    "cache_get_many": NS | {"cache", "keys", "expect"},
    "wait_until_cache_miss": NS | {"cache", "key"},
}
# Keys of the entries of expected lists.
EVENT_KEYS = ("payload", "stream", "offset")
PULL_KEYS = ("payload", "attempt")
DEAD_KEYS = ("payload", "attempts", "reason")
RELATIONS = ("eq", "ne", "gt", "lt")
# Keys that check or store a result: meaningless on a step expected to fail.
RESULT_KEYS = ("as", "expect", "expect_count", "expect_existed", "expect_version")
EXPECT_REQUIRED = ("cache_get", "cache_get_many", "dead_letters")
CODES = {
    "invalid_argument", "not_found", "already_exists", "conflict", "unauthorized", "forbidden",
    "overloaded", "frame_too_large", "unsupported", "timeout", "unavailable", "protocol",
    "slow_consumer", "cancelled", "closed", "internal", "quota_exceeded", "storage",
}  # fmt: skip
SELF_TIMED = ("expect_events", "expect_no_event", "wait_until_cache_miss")


class Fail(Exception):
    """An expectation did not hold, or the scenario is malformed (never an expectable error)."""


class StepTimeout(Exception):
    pass


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def show(b: Optional[bytes]) -> str:
    """Bytes for a report (never for a comparison): text when UTF-8, else base64; truncated."""
    if b is None:
        return "a miss"
    cap = 48
    try:
        s = b.decode()
    except UnicodeDecodeError:
        enc = base64.b64encode(b[:cap]).decode()
        return f"b64:{enc}{'...' if len(b) > cap else ''} ({len(b)} bytes)"
    if len(s) <= cap:
        return json.dumps(s, ensure_ascii=False)
    return f"{json.dumps(s[:cap], ensure_ascii=False)}... ({len(b)} bytes)"


def first_difference(got: Optional[bytes], want: Optional[bytes]) -> str:
    """Where two payloads part, for a report whose shown prefixes may look alike."""
    if got is None or want is None or got == want:
        return ""
    n = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return f" (first difference at byte {n})"


def show_event(e: Any) -> str:
    off = "?" if e.offset is None else e.offset
    return f"{e.stream}@{off} {show(e.payload)}"


def payload(v: Any, what: str) -> bytes:
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, dict) and set(v) == {"b64"}:
        if not isinstance(v["b64"], str):
            raise Fail(f"{what}.b64 must be a string")
        try:
            return base64.b64decode(v["b64"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise Fail(f"{what}.b64 is not standard base64: {e}")
    if isinstance(v, dict) and set(v) == {"repeat", "count"}:
        r, n = v["repeat"], v["count"]
        if not isinstance(r, str) or not r or not _is_uint(n):
            raise Fail(f"{what}: repeat must be a non-empty string and count a non-negative integer")
        return r.encode() * n
    raise Fail(f'{what} must be a string, {{"b64": ...}} or {{"repeat": ..., "count": n}}')


def payload_or_null(v: Any, what: str) -> Optional[bytes]:
    return None if v is None else payload(v, what)


def entry(v: Any, what: str, keys: Sequence[str]) -> Tuple[dict, bytes]:
    """An entry of an expected list: an object with only `keys`, a payload required."""
    if not isinstance(v, dict):
        raise Fail(f"{what} must be an object")
    for k in v:
        if k not in keys:
            raise Fail(f"{what} does not take key {json.dumps(k)}")
    if "payload" not in v:
        raise Fail(f"{what} needs payload")
    for k in keys:
        if k in ("attempt", "attempts", "offset") and k in v and not _is_uint(v[k]):
            raise Fail(f"{what}.{k} must be an integer")
        if k in ("stream", "reason") and k in v and not isinstance(v[k], str):
            raise Fail(f"{what}.{k} must be a string")
    return v, payload(v["payload"], f"{what}.payload")


class Step:
    """One step's object with typed, strict accessors."""

    def __init__(self, op: str, m: dict) -> None:
        self.op, self.m = op, m

    def get(self, k: str) -> Any:
        return self.m.get(k)

    def has(self, k: str) -> bool:
        return k in self.m

    def str(self, k: str) -> Optional[str]:
        if k in self.m and not isinstance(self.m[k], str):
            raise Fail(f"{k} must be a string")
        return self.m.get(k)

    def str_or(self, k: str, default: str) -> str:
        """The string at `k`, `default` when absent (an empty string is a value, not absent)."""
        v = self.str(k)
        return default if v is None else v

    def req_str(self, k: str) -> str:
        v = self.str(k)
        if v is None:
            raise Fail(f"{self.op} needs {k}")
        return v

    def uint(self, k: str) -> Optional[int]:
        if k not in self.m:
            return None
        if not _is_uint(self.m[k]):
            raise Fail(f"{k} must be a non-negative integer")
        return self.m[k]

    def req_uint(self, k: str) -> int:
        v = self.uint(k)
        if v is None:
            raise Fail(f"{self.op} needs {k}")
        return v

    def bool(self, k: str) -> Optional[bool]:
        if k not in self.m:
            return None
        if not isinstance(self.m[k], bool):
            raise Fail(f"{k} must be true or false")
        return self.m[k]

    def array(self, k: str) -> Optional[list]:
        if k not in self.m:
            return None
        if not isinstance(self.m[k], list):
            raise Fail(f"{k} must be an array")
        return self.m[k]

    def req_array(self, k: str) -> list:
        v = self.array(k)
        if v is None:
            raise Fail(f"{self.op} needs {k}")
        return v

    def timeout_ms(self) -> int:
        """The step's own deadline: `timeout_ms`, or the op's default."""
        own = self.uint("timeout_ms")
        if own is not None:
            return own
        if self.op == "expect_events":
            return DEFAULT_EVENTS_MS
        if self.op == "wait_until_cache_miss":
            raise Fail("wait_until_cache_miss needs timeout_ms")
        if self.op == "queue_pull":
            return (self.uint("wait_ms") or 0) + DEFAULT_STEP_MS
        if self.op == "expect_no_event":
            return (self.uint("within_ms") or 0) + DEFAULT_STEP_MS
        return DEFAULT_STEP_MS


def validate_step(i: int, st: Any) -> Tuple[Step, Optional[str]]:
    """Checks a step's shape before it runs: keys at every level, expect_error, the entries of
    expected lists, payload objects and version relations. Returns the step and the error code
    it expects."""
    if not isinstance(st, dict):
        raise Fail("a step must be an object")
    op = st.get("op")
    if not isinstance(op, str):
        raise Fail("a step needs a string op")
    if op not in KEYS:
        raise Fail(f"unknown op {json.dumps(op)}")
    for k in st:
        if k not in COMMON and k not in KEYS[op]:
            raise Fail(f"{op} does not take key {json.dumps(k)}")
    s = Step(op, st)
    expected = None
    if "expect_error" in st:
        e = st["expect_error"]
        if not (isinstance(e, dict) and set(e) == {"code"} and isinstance(e["code"], str)):
            raise Fail('expect_error must be {"code": "..."}')
        expected = e["code"]
        if expected not in CODES:
            raise Fail(f"expect_error names unknown code {json.dumps(expected)}")
        for k in RESULT_KEYS:
            if k in st and not (k == "as" and op in ("connect", "subscribe")):
                raise Fail(f"{json.dumps(k)} cannot be combined with expect_error")
        if op == "expect_no_event":
            raise Fail("expect_no_event cannot expect an error")
    if expected is None and op in EXPECT_REQUIRED and "expect" not in st:
        raise Fail(f"{op} needs expect (unless it has expect_error)")
    s.timeout_ms()
    # Nested objects: every entry, payload and relation is checked, typos included.
    for k in ("payload", "value"):
        if k in st:
            payload(st[k], k)
    for k in ("payloads",):
        for j, p in enumerate(s.array(k) or []):
            payload(p, f"{k}[{j}]")
    if op == "expect_events":
        for j, e in enumerate(s.array("events") or []):
            entry(e, f"events[{j}]", EVENT_KEYS)
    if op == "queue_pull":
        for j, e in enumerate(s.array("expect") or []):
            entry(e, f"expect[{j}]", PULL_KEYS)
    if op == "dead_letters":
        for j, e in enumerate(s.array("expect") or []):
            entry(e, f"expect[{j}]", DEAD_KEYS)
    if op == "cache_get" and "expect" in st:
        payload_or_null(st["expect"], "expect")
    if op == "cache_get_many":
        for j, e in enumerate(s.array("expect") or []):
            payload_or_null(e, f"expect[{j}]")
    if "expect_version" in st:
        rel = st["expect_version"]
        if not isinstance(rel, dict) or not rel:
            raise Fail("expect_version must be an object with eq, ne, gt and/or lt")
        for k in rel:
            if k not in RELATIONS:
                raise Fail(f"unknown version relation {json.dumps(k)}")
    return s, expected


def validate_top(sc: Any, stem: Optional[str]) -> None:
    if not isinstance(sc, dict):
        raise Fail("a scenario must be a JSON object")
    for k in sc:
        if k not in TOP:
            raise Fail(f"unknown top-level key {json.dumps(k)}")
    name = sc.get("name")
    if not isinstance(name, str):
        raise Fail("missing name")
    if stem is not None and name != stem:
        raise Fail(f"name {json.dumps(name)} differs from the file name {json.dumps(stem)}")
    if not isinstance(sc.get("description"), str) or not sc["description"]:
        raise Fail("missing description")
    if "timeout_ms" in sc and not _is_uint(sc["timeout_ms"]):
        raise Fail("timeout_ms must be an integer")
    if "broker" in sc and sc["broker"] not in BROKERS:
        raise Fail(f"unknown broker {json.dumps(sc['broker'])} (one of {', '.join(BROKERS)})")
    if not isinstance(sc.get("steps"), list) or not sc["steps"]:
        raise Fail("steps must be a non-empty array")

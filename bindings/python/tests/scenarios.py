"""Runner of the language-neutral scenarios in tests/scenarios/ (see the README there) over the
Python binding's blocking client. `run_scenario` returns None on success, or
`(step index, op, reason)` for the first failing step."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

import felix

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
    "wait_until_cache_miss": NS | {"cache", "key", "timeout_ms"},
}
TOP = {"$schema", "name", "description", "timeout_ms", "steps"}


class Fail(Exception):
    pass


def _subst(v: Any, ns: str) -> Any:
    if isinstance(v, str):
        return v.replace("${ns}", ns)
    if isinstance(v, list):
        return [_subst(x, ns) for x in v]
    if isinstance(v, dict):
        return {k: _subst(x, ns) for k, x in v.items()}
    return v


def payload(p: Any) -> bytes:
    if isinstance(p, str):
        return p.encode()
    if isinstance(p, dict) and set(p) == {"b64"}:
        return base64.b64decode(p["b64"], validate=True)
    if isinstance(p, dict) and set(p) == {"repeat", "count"}:
        return p["repeat"].encode() * p["count"]
    raise Fail(f"malformed payload {p!r}")


def show(b: Optional[bytes]) -> str:
    if b is None:
        return "null"
    try:
        s = b.decode()
    except UnicodeDecodeError:
        s = "b64:" + base64.b64encode(b).decode()
    return s if len(s) <= 60 else s[:60] + "..."


class Runner:
    def __init__(self, address: str, ca_file: str) -> None:
        self.address, self.ca_file = address, ca_file
        self.clients: Dict[str, felix.Client] = {}
        self.subs: Dict[str, felix.Subscription] = {}
        self.offsets: Dict[str, List[int]] = {}
        self.versions: Dict[str, int] = {}

    def close_all(self) -> None:
        for s in self.subs.values():
            s.close()
        for c in self.clients.values():
            c.close()

    # helpers
    def client(self, st: dict) -> felix.Client:
        name = st.get("client", "default")
        if name not in self.clients:
            raise Fail(f"unknown client alias {name!r}")
        return self.clients[name]

    def version(self, ref: Any) -> int:
        if isinstance(ref, int):
            return ref
        if ref not in self.versions:
            raise Fail(f"unknown version alias {ref!r}")
        return self.versions[ref]

    def offs(self, ref: Any) -> List[int]:
        items = [ref] if isinstance(ref, str) else ref
        if not isinstance(items, list):
            raise Fail(f"malformed offsets {ref!r}")
        out: List[int] = []
        for it in items:
            if isinstance(it, int) and not isinstance(it, bool):
                out.append(it)
                continue
            if not isinstance(it, str):
                raise Fail(f"malformed offset {it!r}")
            name, idx = it, None
            if it.endswith("]") and "[" in it:
                name, i = it[:-1].split("[", 1)
                idx = int(i)
            if name not in self.offsets:
                raise Fail(f"unknown offset alias {name!r}")
            vals = self.offsets[name]
            if idx is None:
                out.extend(vals)
            elif idx >= len(vals):
                raise Fail(f"{it}: index out of range ({len(vals)} offsets)")
            else:
                out.append(vals[idx])
        return out

    def check_version(self, st: dict, v: int) -> None:
        rel = st.get("expect_version")
        if rel is None:
            return
        ops = {"eq": v.__eq__, "ne": v.__ne__, "gt": v.__gt__, "lt": v.__lt__}
        for k, ref in rel.items():
            if k not in ops:
                raise Fail(f"unknown version relation {k!r}")
            if not ops[k](self.version(ref)):
                raise Fail(f"version {v} is not {k} {self.version(ref)}")

    def expect_count(self, st: dict, n: int) -> None:
        if "expect_count" in st and st["expect_count"] != n:
            raise Fail(f"count {n}, expected {st['expect_count']}")

    # one step
    def step(self, st: dict) -> None:
        op = st["op"]
        ns = st.get("namespace")
        if op == "connect":
            c = felix.Client(self.address, ca_file=self.ca_file, tenant=st.get("tenant", "default"), token=st.get("token"))
            self.clients[st.get("as", "default")] = c
        elif op == "close":
            if ("client" in st) == ("subscription" in st):
                raise Fail("close takes exactly one of client, subscription")
            if "client" in st:
                self.client(st).close()
            else:
                self.sub(st).close()
                del self.subs[st["subscription"]]
        elif op == "publish":
            if ("payload" in st) == ("payloads" in st):
                raise Fail("publish takes exactly one of payload, payloads")
            ps = [payload(st["payload"])] if "payload" in st else [payload(p) for p in st["payloads"]]
            self.client(st).publish_batch(ns, st["stream"], ps, ack=st.get("ack", "per_batch"))
        elif op == "subscribe":
            start = st.get("from", "latest")
            self.subs[st["as"]] = self.client(st).subscribe(ns, st["stream"], start)
        elif op == "expect_events":
            self.expect_events(st)
        elif op == "expect_no_event":
            sub = self.sub(st)
            if st["within_ms"] > 10000:
                raise Fail("within_ms above 10000")
            try:
                ev = sub.next(timeout=st["within_ms"] / 1000)
            except felix.TimeoutError:
                return
            raise Fail(f"unexpected {ev!r}")
        elif op == "create_stream":
            self.client(st).create_stream(ns, st["stream"], max_records=st.get("max_records"), max_bytes=st.get("max_bytes"), subscriber_buffer=st.get("subscriber_buffer"), full_policy=st.get("full_policy"))
        elif op == "create_cache":
            ttl = st.get("default_ttl_ms")
            self.client(st).create_cache(ns, st["cache"], max_bytes=st.get("max_bytes"), default_ttl=None if ttl is None else ttl / 1000)
        elif op == "create_group":
            at = st.get("ack_timeout_ms")
            self.client(st).create_group(ns, st["stream"], st["group"], from_latest=st.get("from", "earliest") == "latest", ack_timeout=None if at is None else at / 1000, max_deliveries=st.get("max_deliveries"))
        elif op == "queue_pull":
            msgs = self.client(st).consumer(ns, st["stream"], st["group"]).pull(st.get("max", 100), st.get("wait_ms", 0) / 1000)
            if "expect" in st:
                got = [(show(m.payload), m.attempt) for m in msgs]
                want = [(show(payload(e["payload"])), e.get("attempt")) for e in st["expect"]]
                if len(got) != len(want) or any(g[0] != w[0] or (w[1] is not None and g[1] != w[1]) for g, w in zip(got, want)):
                    raise Fail(f"pulled {got}, expected {want}")
            if "as" in st:
                self.offsets[st["as"]] = [m.offset for m in msgs]
        elif op in ("queue_ack", "queue_nack", "queue_redrive"):
            c = self.client(st).consumer(ns, st["stream"], st["group"])
            if op == "queue_ack":
                n = c.ack(self.offs(st["offsets"]))
            elif op == "queue_nack":
                n = c.nack(self.offs(st["offsets"]), st.get("delay_ms", 0) / 1000)
            else:
                n = c.redrive(self.offs(st["offsets"]) if "offsets" in st else None)
            self.expect_count(st, n)
        elif op == "dead_letters":
            ds = self.client(st).consumer(ns, st["stream"], st["group"]).dead_letters(st.get("max", 100))
            if "expect" not in st:
                raise Fail("dead_letters needs expect")
            got = [(show(d.payload), d.attempts, d.reason) for d in ds]
            want = [(show(payload(e["payload"])), e.get("attempts"), e.get("reason")) for e in st["expect"]]
            ok = len(got) == len(want) and all(g[0] == w[0] and w[1] in (None, g[1]) and w[2] in (None, g[2]) for g, w in zip(got, want))
            if not ok:
                raise Fail(f"dead letters {got}, expected {want}")
            if "as" in st:
                self.offsets[st["as"]] = [d.offset for d in ds]
        elif op == "cache_put":
            ttl = st.get("ttl_ms")
            iv = st.get("if_version")
            v = self.client(st).cache_put_if(ns, st["cache"], st["key"], payload(st["value"]), ttl=None if ttl is None else ttl / 1000, if_absent=bool(st.get("if_absent", False)), if_version=None if iv is None else self.version(iv))
            self.check_version(st, v)
            if "as" in st:
                self.versions[st["as"]] = v
        elif op == "cache_get":
            got = self.client(st).cache_get(ns, st["cache"], st["key"])
            if "expect" not in st:
                raise Fail("cache_get needs expect")
            want = None if st["expect"] is None else payload(st["expect"])
            if (got and got.value) != want and not (got is None and want is None):
                raise Fail(f"got {show(got and got.value)}, expected {show(want)}")
            if ("expect_version" in st or "as" in st) and got is None:
                raise Fail("expect_version/as need a hit")
            if got is not None:
                self.check_version(st, got.version)
                if "as" in st:
                    self.versions[st["as"]] = got.version
        elif op == "cache_delete":
            existed = self.client(st).cache_delete(ns, st["cache"], st["key"])
            if "expect_existed" in st and existed != st["expect_existed"]:
                raise Fail(f"existed {existed}, expected {st['expect_existed']}")
        elif op == "cache_get_many":
            vals = self.client(st).cache_get_many(ns, st["cache"], st["keys"])
            if "expect" not in st:
                raise Fail("cache_get_many needs expect")
            got = [None if v is None else show(v.value) for v in vals]
            want = [None if e is None else show(payload(e)) for e in st["expect"]]
            if got != want:
                raise Fail(f"got {got}, expected {want}")
        elif op == "wait_until_cache_miss":
            c = self.client(st)
            deadline = time.monotonic() + st["timeout_ms"] / 1000
            while c.cache_get(ns, st["cache"], st["key"]) is not None:
                if time.monotonic() > deadline:
                    raise Fail("still a hit at the deadline")
                time.sleep(0.01)
        else:
            raise Fail(f"unknown op {op!r}")

    def sub(self, st: dict) -> felix.Subscription:
        name = st.get("subscription")
        if name not in self.subs:
            raise Fail(f"unknown subscription alias {name!r}")
        return self.subs[name]

    def expect_events(self, st: dict) -> None:
        sub = self.sub(st)
        if ("payloads" in st) == ("events" in st):
            raise Fail("expect_events takes exactly one of payloads, events")
        want = [{"payload": p} for p in st["payloads"]] if "payloads" in st else st["events"]
        deadline = time.monotonic() + st.get("timeout_ms", 5000) / 1000
        got = []
        for i in range(len(want)):
            left = max(0.0, deadline - time.monotonic())
            try:
                ev = sub.next(timeout=left)
            except felix.TimeoutError:
                raise Fail(f"only {i} of {len(want)} events before the deadline")
            if ev is None:
                raise Fail(f"subscription ended after {i} events")
            got.append(ev)
        norm = lambda e, w: ((show(e.payload), e.stream if "stream" in w else None, e.offset if "offset" in w else None))  # noqa: E731
        wnorm = [(show(payload(w["payload"])), w.get("stream"), w.get("offset")) for w in want]
        gnorm = [norm(e, w) for e, w in zip(got, want)]
        if st.get("any_order"):
            gnorm_any = sorted([(show(e.payload), e.stream, e.offset) for e in got], key=repr)
            wk = sorted(wnorm, key=repr)
            ok = len(gnorm_any) == len(wk) and all(
                g[0] == w[0] and w[1] in (None, g[1]) and w[2] in (None, g[2])
                for g, w in zip(sorted(gnorm_any, key=lambda x: (x[0], x[1] or "", x[2] or 0)), sorted(wk, key=lambda x: (x[0], x[1] or "", x[2] or 0)))
            )
        else:
            ok = gnorm == wnorm
        if not ok:
            raise Fail(f"events {gnorm}, expected {wnorm}")
        if "expect_error" in st:
            left = max(0.0, deadline - time.monotonic())
            sub.next(timeout=left)  # must raise: checked by the caller
            raise Fail("no error after the events")


def validate(sc: dict) -> None:
    extra = set(sc) - TOP
    if extra or not {"name", "description", "steps"} <= set(sc) or not sc["steps"]:
        raise Fail(f"malformed scenario (keys {sorted(sc)})")
    for i, st in enumerate(sc["steps"]):
        op = st.get("op")
        if op not in KEYS:
            raise Fail(f"step {i}: unknown op {op!r}")
        bad = set(st) - KEYS[op] - COMMON
        if bad:
            raise Fail(f"step {i} ({op}): unknown keys {sorted(bad)}")


def run_scenario(sc: dict, address: str, ca_file: str, index: int = 0) -> Optional[Tuple[int, str, str]]:
    try:
        validate(sc)
    except Fail as e:
        return (-1, "-", str(e))
    ns = f"sc_{index}_{uuid.uuid4().hex[:10]}"
    steps = [_subst(st, ns) for st in sc["steps"]]
    for st in steps:
        st.setdefault("namespace", ns) if st["op"] not in ("connect", "close", "expect_events", "expect_no_event") else None
    r = Runner(address, ca_file)
    deadline = time.monotonic() + sc.get("timeout_ms", 60000) / 1000
    try:
        for i, st in enumerate(steps):
            if time.monotonic() > deadline:
                return (i, st["op"], "scenario timed out")
            want = st.get("expect_error", {}).get("code")
            try:
                r.step(st)
            except Fail as e:
                return (i, st["op"], str(e))
            except felix.FelixError as e:
                if want != e.code:
                    return (i, st["op"], f"error {e.code}: {e.message}" + (f" (expected {want})" if want else ""))
                continue
            if want:
                return (i, st["op"], f"succeeded, expected error {want}")
        return None
    finally:
        r.close_all()

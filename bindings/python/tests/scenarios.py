"""Runner of the language-neutral scenarios in tests/scenarios/ (see the README there) over the
Python binding's blocking client. `run_scenario` returns None on success, or
`(step index, op, reason)` for the first failing step. The format and its validation are in
scenario_format.py; this module holds a run's state, its ops and the step loop."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

import felix
from scenario_format import (
    DEAD_KEYS, DEFAULT_SCENARIO_MS, EVENT_KEYS, MAX_NO_EVENT_MS, POLL_S, PULL_KEYS,
    SAFETY_MS, SELF_TIMED, Fail, Step, StepTimeout, _is_uint, entry, first_difference,
    payload, payload_or_null, show, show_event, validate_step, validate_top,
)  # fmt: skip


class Runner:
    """State of one scenario run, and its ops (each raises Fail, or a FelixError the step may
    expect)."""

    def __init__(self, address: str, ca_file: str, ns: str) -> None:
        self.address, self.ca_file, self.default_ns = address, ca_file, ns
        self.clients: Dict[str, felix.Client] = {}
        self.subs: Dict[str, felix.Subscription] = {}
        self.offsets: Dict[str, List[int]] = {}
        self.versions: Dict[str, int] = {}

    def close_all(self) -> None:
        for sub in list(self.subs.values()):
            sub.close()
        for c in list(self.clients.values()):
            c.close()

    # references
    def client(self, s: Step) -> felix.Client:
        alias = s.str_or("client", "default")
        if alias not in self.clients:
            raise Fail(f"unknown client alias {json.dumps(alias)} (connect it first)")
        return self.clients[alias]

    def ns(self, s: Step) -> str:
        return s.str_or("namespace", self.default_ns)

    def sub(self, s: Step) -> felix.Subscription:
        alias = s.req_str("subscription")
        if alias not in self.subs:
            raise Fail(f"unknown subscription alias {json.dumps(alias)}")
        return self.subs[alias]

    def offs(self, ref: Any) -> List[int]:
        """Offsets named by an offset reference (README: "Offset references")."""
        if isinstance(ref, str):
            items = [ref]
        elif isinstance(ref, list):
            items = ref
        else:
            raise Fail("offsets must be an offset reference or an array of them")
        out: List[int] = []
        for it in items:
            if _is_uint(it):
                out.append(it)
                continue
            if not isinstance(it, str):
                raise Fail('an offset reference is an alias, "alias[i]" or an integer')
            name, idx = it, None
            if it.endswith("]") and "[" in it:
                name, i = it[:-1].split("[", 1)
                if not i.isdigit():
                    raise Fail(f"bad offset reference {json.dumps(it)}")
                idx = int(i)
            if name not in self.offsets:
                raise Fail(f"unknown offset alias {json.dumps(name)}")
            vals = self.offsets[name]
            if idx is None:
                out.extend(vals)
            elif idx >= len(vals):
                raise Fail(f"offset reference {json.dumps(it)}: alias {json.dumps(name)} holds {len(vals)} offsets")
            else:
                out.append(vals[idx])
        return out

    def version(self, ref: Any) -> int:
        if isinstance(ref, str):
            if ref not in self.versions:
                raise Fail(f"unknown version alias {json.dumps(ref)}")
            return self.versions[ref]
        if not _is_uint(ref):
            raise Fail("a version reference is an alias or an integer")
        return ref

    def check_version(self, s: Step, got: int) -> None:
        rel = s.get("expect_version")
        if rel is None:
            return
        for k, ref in rel.items():
            want = self.version(ref)
            ok = {"eq": got == want, "ne": got != want, "gt": got > want, "lt": got < want}[k]
            if not ok:
                label = ref if isinstance(ref, str) else "literal"
                raise Fail(f"version {got} is not {k} {want} ({label})")

    def store(self, s: Step, table: Dict[str, Any], value: Any) -> None:
        alias = s.str("as")
        if alias is not None:
            table[alias] = value

    @staticmethod
    def check_count(s: Step, got: int) -> None:
        want = s.uint("expect_count")
        if want is not None and want != got:
            raise Fail(f"count is {got}, expected {want}")

    def exec(self, s: Step, own_ms: int, expect_error: bool) -> None:
        op = s.op
        if op in ("queue_ack", "queue_nack", "queue_redrive"):
            return self.queue_settle(s)
        if op == "expect_events":
            return self.expect_events(s, own_ms, expect_error)
        if op == "wait_until_cache_miss":
            return self.wait_until_cache_miss(s, own_ms)
        getattr(self, op)(s)

    # connections and pub/sub
    def connect(self, s: Step) -> None:
        tenant = s.str_or("tenant", "default")
        c = felix.Client(self.address, ca_file=self.ca_file, tenant=tenant, token=s.str("token"))
        old = self.clients.get(s.str_or("as", "default"))
        self.clients[s.str_or("as", "default")] = c
        if old is not None:
            old.close()

    def close(self, s: Step) -> None:
        client, sub = s.str("client"), s.str("subscription")
        if (client is None) == (sub is None):
            raise Fail("close needs exactly one of client, subscription")
        if client is not None:
            self.client(s).close()
        else:
            self.sub(s).close()
            del self.subs[sub]

    def publish(self, s: Step) -> None:
        c = self.client(s)
        ps = s.array("payloads")
        if s.has("payload") == (ps is not None):
            raise Fail("publish needs exactly one of payload, payloads")
        if ps is None:
            data = [payload(s.get("payload"), "payload")]
        else:
            data = [payload(p, f"payloads[{i}]") for i, p in enumerate(ps)]
        ack = s.str_or("ack", "per_batch")
        if ack not in ("per_batch", "per_message", "none"):
            raise Fail(f"unknown ack mode {json.dumps(ack)}")
        c.publish_batch(self.ns(s), s.req_str("stream"), data, ack=ack)

    def subscribe(self, s: Step) -> None:
        c = self.client(s)
        alias = s.req_str("as")
        start = s.get("from") if s.has("from") else "latest"
        if start not in ("latest", "earliest") and not _is_uint(start):
            raise Fail('from must be "latest", "earliest" or an offset')
        self.subs[alias] = c.subscribe(self.ns(s), s.req_str("stream"), start)

    def expect_events(self, s: Step, own_ms: int, expect_error: bool) -> None:
        ps, es = s.array("payloads"), s.array("events")
        if (ps is None) == (es is None):
            raise Fail("expect_events needs exactly one of payloads, events")
        if ps is not None:
            want = [(payload(p, f"payloads[{i}]"), None, None) for i, p in enumerate(ps)]
        else:
            want = []
            for i, e in enumerate(es or []):
                o, p = entry(e, f"events[{i}]", EVENT_KEYS)
                want.append((p, o.get("stream"), o.get("offset")))
        any_order = bool(s.bool("any_order"))
        deadline = time.monotonic() + own_ms / 1000
        sub = self.sub(s)
        got: List[Any] = []

        def matches(w: Tuple[bytes, Optional[str], Optional[int]], e: Any) -> bool:
            return w[0] == e.payload and w[1] in (None, e.stream) and (w[2] is None or w[2] == e.offset)

        def show_want(w: Tuple[bytes, Optional[str], Optional[int]]) -> str:
            return f"{w[1] or '*'}@{'*' if w[2] is None else w[2]} {show(w[0])}"

        def progress() -> str:
            return f"{len(got)} of {len(want)} events received [{', '.join(show_event(e) for e in got)}]"

        while len(got) < len(want):
            try:
                ev = sub.next(timeout=max(0.0, deadline - time.monotonic()))
            except felix.TimeoutError:
                raise Fail(f"timed out after {own_ms} ms: {progress()}")
            except felix.FelixError as e:
                # An error before the events is a failure even when the step expects one.
                raise Fail(f"subscription error ({e.code}) {e.message}: {progress()}")
            if ev is None:
                raise Fail(f"subscription ended: {progress()}")
            if not any_order and not matches(want[len(got)], ev):
                w = want[len(got)]
                diff = first_difference(ev.payload, w[0])
                raise Fail(f"event {len(got)} is {show_event(ev)}, expected {show_want(w)}{diff}")
            got.append(ev)
        if any_order:
            used = [False] * len(want)
            for ev in got:
                i = next((i for i, w in enumerate(want) if not used[i] and matches(w, ev)), None)
                if i is None:
                    missing = ", ".join(show_want(w) for j, w in enumerate(want) if not used[j])
                    raise Fail(f"unexpected event {show_event(ev)} (still expected: {missing})")
                used[i] = True
        if expect_error:
            try:
                ev = sub.next(timeout=max(0.0, deadline - time.monotonic()))
            except felix.TimeoutError:
                raise Fail(f"timed out after {own_ms} ms waiting for the error")
            if ev is None:
                raise Fail("subscription ended without an error")
            raise Fail(f"expected an error, got event {show_event(ev)}")

    def expect_no_event(self, s: Step) -> None:
        within = s.req_uint("within_ms")
        if not 1 <= within <= MAX_NO_EVENT_MS:
            raise Fail(f"within_ms must be in 1..={MAX_NO_EVENT_MS}")
        sub = self.sub(s)
        try:
            ev = sub.next(timeout=within / 1000)
        except felix.TimeoutError:
            return
        except felix.FelixError as e:
            raise Fail(f"unexpected subscription error ({e.code}) {e.message}")
        if ev is None:
            raise Fail("the subscription ended")
        raise Fail(f"unexpected event {show_event(ev)}")

    # streams, caches and groups with settings
    def create_stream(self, s: Step) -> None:
        c = self.client(s)
        policy = s.str("full_policy")
        if policy not in (None, "block", "drop_newest", "drop_oldest", "disconnect"):
            raise Fail(f"unknown full_policy {json.dumps(policy)}")
        c.create_stream(
            self.ns(s), s.req_str("stream"), max_records=s.uint("max_records"),
            max_bytes=s.uint("max_bytes"), subscriber_buffer=s.uint("subscriber_buffer"),
            full_policy=policy,
        )  # fmt: skip

    def create_cache(self, s: Step) -> None:
        c = self.client(s)
        ttl = s.uint("default_ttl_ms")
        c.create_cache(
            self.ns(s), s.req_str("cache"), max_bytes=s.uint("max_bytes"),
            default_ttl=None if ttl is None else ttl / 1000,
        )  # fmt: skip

    def create_group(self, s: Step) -> None:
        c = self.client(s)
        start = s.str_or("from", "earliest")
        if start not in ("earliest", "latest"):
            raise Fail(f"unknown group start {json.dumps(start)}")
        at = s.uint("ack_timeout_ms")
        c.create_group(
            self.ns(s), s.req_str("stream"), s.req_str("group"), from_latest=start == "latest",
            ack_timeout=None if at is None else at / 1000, max_deliveries=s.uint("max_deliveries"),
        )  # fmt: skip

    # work queues
    def consumer(self, s: Step) -> felix.Consumer:
        return self.client(s).consumer(self.ns(s), s.req_str("stream"), s.req_str("group"))

    def queue_pull(self, s: Step) -> None:
        consumer = self.consumer(s)
        mx = s.uint("max")
        got = consumer.pull(100 if mx is None else mx, (s.uint("wait_ms") or 0) / 1000)
        shown = "[" + ", ".join(f"{show(m.payload)}@{m.offset} attempt {m.attempt}" for m in got) + "]"
        want = s.array("expect")
        if want is not None:
            if len(want) != len(got):
                raise Fail(f"pulled {len(got)} messages, expected {len(want)}: {shown}")
            for i, (w, m) in enumerate(zip(want, got)):
                o, p = entry(w, f"expect[{i}]", PULL_KEYS)
                attempt = o.get("attempt")
                if p != m.payload or (attempt is not None and attempt != m.attempt):
                    a = "*" if attempt is None else attempt
                    raise Fail(
                        f"message {i} is {show(m.payload)} attempt {m.attempt}, expected {show(p)} "
                        f"attempt {a}{first_difference(m.payload, p)}; pulled {shown}"
                    )
        self.store(s, self.offsets, [m.offset for m in got])

    def queue_settle(self, s: Step) -> None:
        consumer = self.consumer(s)
        offs = None if not s.has("offsets") else self.offs(s.get("offsets"))
        if offs is None and s.op != "queue_redrive":
            raise Fail(f"{s.op} needs offsets")
        if s.op == "queue_ack":
            n = consumer.ack(offs)
        elif s.op == "queue_nack":
            n = consumer.nack(offs, (s.uint("delay_ms") or 0) / 1000)
        else:
            n = consumer.redrive(offs)
        self.check_count(s, n)

    def dead_letters(self, s: Step) -> None:
        consumer = self.consumer(s)
        want = s.array("expect")
        mx = s.uint("max")
        got = consumer.dead_letters(100 if mx is None else mx)
        if want is None:
            raise Fail("dead_letters needs expect")
        shown = ", ".join(f"{show(d.payload)}@{d.offset} attempts {d.attempts} {d.reason}" for d in got)
        shown = f"[{shown}]"
        if len(want) != len(got):
            raise Fail(f"{len(got)} dead letters, expected {len(want)}: {shown}")
        for i, (w, d) in enumerate(zip(want, got)):
            o, p = entry(w, f"expect[{i}]", DEAD_KEYS)
            if (
                p != d.payload
                or o.get("attempts") not in (None, d.attempts)
                or o.get("reason") not in (None, d.reason)
            ):
                diff = first_difference(d.payload, p)
                raise Fail(f"dead letter {i} does not match {json.dumps(w)}{diff}; got {shown}")
        self.store(s, self.offsets, [d.offset for d in got])

    # cache
    def cache_put(self, s: Step) -> None:
        c = self.client(s)
        if not s.has("value"):
            raise Fail("cache_put needs value")
        value = payload(s.get("value"), "value")
        ttl = s.uint("ttl_ms")
        if_absent = s.bool("if_absent")
        if if_absent and s.has("if_version"):
            raise Fail("if_absent and if_version are exclusive")
        iv = None if not s.has("if_version") else self.version(s.get("if_version"))
        v = c.cache_put_if(
            self.ns(s), s.req_str("cache"), s.req_str("key"), value,
            ttl=None if ttl is None else ttl / 1000, if_absent=bool(if_absent), if_version=iv,
        )  # fmt: skip
        self.check_version(s, v)
        self.store(s, self.versions, v)

    def cache_get(self, s: Step) -> None:
        c = self.client(s)
        has_want = s.has("expect")
        want = payload_or_null(s.get("expect"), "expect") if has_want else None
        got = c.cache_get(self.ns(s), s.req_str("cache"), s.req_str("key"))
        if not has_want:
            raise Fail("cache_get needs expect (a value, or null for a miss)")
        if want is None and got is None:
            if s.has("expect_version") or s.has("as"):
                raise Fail("expect_version and as need a hit")
            return
        if want is not None and got is not None and want == got.value:
            self.check_version(s, got.version)
            self.store(s, self.versions, got.version)
            return
        g = "a miss" if got is None else f"{show(got.value)} (version {got.version})"
        raise Fail(f"got {g}, expected {show(want)}{first_difference(got and got.value, want)}")

    def cache_delete(self, s: Step) -> None:
        existed = self.client(s).cache_delete(self.ns(s), s.req_str("cache"), s.req_str("key"))
        want = s.bool("expect_existed")
        if want is not None and want != existed:
            raise Fail(f"delete reported existed = {str(existed).lower()}, expected {str(want).lower()}")

    def cache_get_many(self, s: Step) -> None:
        c = self.client(s)
        keys = s.req_array("keys")
        if not all(isinstance(k, str) for k in keys):
            raise Fail("keys must be strings")
        raw = s.array("expect")
        want = None if raw is None else [payload_or_null(w, f"expect[{i}]") for i, w in enumerate(raw)]
        if want is not None and len(want) != len(keys):
            raise Fail("expect needs one entry per key")
        got = c.cache_get_many(self.ns(s), s.req_str("cache"), keys)
        if want is None:
            raise Fail("cache_get_many needs expect")
        if len(got) != len(keys):
            raise Fail(f"{len(got)} results for {len(keys)} keys")
        for k, w, g in zip(keys, want, got):
            if w != (None if g is None else g.value):
                gv = None if g is None else g.value
                raise Fail(f"key {json.dumps(k)}: got {show(gv)}, expected {show(w)}{first_difference(gv, w)}")

    def wait_until_cache_miss(self, s: Step, own_ms: int) -> None:
        c = self.client(s)
        ns, cache, key = self.ns(s), s.req_str("cache"), s.req_str("key")
        deadline = time.monotonic() + own_ms / 1000
        while True:
            v = c.cache_get(ns, cache, key)
            if v is None:
                return
            if time.monotonic() >= deadline:
                raise Fail(f"{json.dumps(key)} still holds {show(v.value)} after {own_ms} ms")
            time.sleep(POLL_S)


def _subst(v: Any, ns: str) -> Any:
    if isinstance(v, str):
        return v.replace("${ns}", ns)
    if isinstance(v, list):
        return [_subst(x, ns) for x in v]
    if isinstance(v, dict):
        return {k: _subst(x, ns) for k, x in v.items()}
    return v


def _within(fn: Callable[[], None], seconds: float) -> None:
    """Runs `fn` with a deadline: a blocking call that overruns it fails the step (the run's
    clients are closed afterwards, which ends the call still running in its thread)."""
    box: Dict[str, BaseException] = {}

    def target() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["e"] = e

    t = threading.Thread(target=target, name="scenario-step", daemon=True)
    t.start()
    t.join(max(0.0, seconds))
    if t.is_alive():
        raise StepTimeout
    if "e" in box:
        raise box["e"]


def run_scenario(
    sc: Any,
    address: str,
    ca_file: str,
    index: int = 0,
    stem: Optional[str] = None,
    jwt_broker: Optional[Callable[[], Tuple[str, str]]] = None,
) -> Optional[Tuple[int, str, str]]:
    """Runs one scenario; None when it passed, else (step index, op, reason). `stem` is the
    file name without `.json` (the scenario's name must equal it). `address`/`ca_file` are the
    dev broker's; `jwt_broker()` gives the JWT-mode one's, for a scenario with
    `"broker": "jwt"` (README, "Brokers")."""
    try:
        validate_top(sc, stem)
    except Fail as e:
        return (-1, "-", str(e))
    if sc.get("broker", "dev") == "jwt":
        if jwt_broker is None:
            return (-1, "-", "the scenario needs the jwt broker, which this run has not")
        address, ca_file = jwt_broker()
    ns = f"sc_{index}_{uuid.uuid4().hex[:10]}"
    steps = _subst(sc["steps"], ns)
    scenario_ms = sc.get("timeout_ms", DEFAULT_SCENARIO_MS)
    scenario_deadline = time.monotonic() + scenario_ms / 1000
    r = Runner(address, ca_file, ns)
    try:
        for i, raw in enumerate(steps):
            op = raw.get("op", "?") if isinstance(raw, dict) else "?"
            try:
                s, expected = validate_step(i, raw)
            except Fail as e:
                return (i, op, str(e))
            own = s.timeout_ms()
            outer = own + (SAFETY_MS if op in SELF_TIMED else 0)
            left = scenario_deadline - time.monotonic()
            try:
                _within(lambda: r.exec(s, own, expected is not None), min(outer / 1000, left))
            except StepTimeout:
                if left < outer / 1000:
                    return (i, op, f"scenario timed out after {scenario_ms} ms")
                return (i, op, f"timed out after {outer} ms")
            except Fail as e:
                return (i, op, str(e))
            except felix.FelixError as e:
                if expected is None:
                    return (i, op, f"unexpected error ({e.code}) {e.message}")
                if e.code != expected:
                    return (i, op, f"expected error {expected}, got ({e.code}) {e.message}")
                continue
            if expected is not None:
                return (i, op, f"expected error {expected}, but the step succeeded")
        return None
    finally:
        r.close_all()

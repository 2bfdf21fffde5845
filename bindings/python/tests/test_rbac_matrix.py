"""The RBAC matrix against a real broker process in JWT mode (the scenario fixture's key,
tests/scenarios/auth/): tenants x principals x every client action (publish, subscribe,
consume, cache read, cache write) x resources (a name granted exactly, a name granted through
a wildcard pattern, a name not granted, a wildcard subscription, another tenant, another
region), each cell
asserted allowed or forbidden; then zero cross-tenant reads or writes: every byte a tenant
reads back is its own.

The expected table is written out here, from the grants of tests/scenarios/auth/principals.json,
not computed by the code under test:
  admin:  everything in its tenant (`*` on `>`).
  orders: publish, subscribe, consume on `*/orders.*`; cache.read on `*/prices` (exact name).
  reader: subscribe, consume, cache.read on `>`; no publish, no cache write."""

import json
import uuid

import pytest

import felix
from conftest import AUTH_FIXTURE

TOKENS = json.loads((AUTH_FIXTURE / "tokens.json").read_text())["tokens"]
TENANTS = ["alpha", "beta"]
PRINCIPALS = ["admin", "orders", "reader"]
GROUP = "g"

# Resources: (kind, name). Streams: `orders.eu` is granted to `orders` through the wildcard
# pattern `orders.*`; `payments` is granted to nobody but admin and reader (`>`). Caches:
# `prices` is granted (read) to `orders` by its exact name; `secrets` is not.
STREAMS = ["orders.eu", "payments"]
CACHES = ["prices", "secrets"]

A, F = "allowed", "forbidden"
EXPECTED = {
    # (principal, action, resource) -> outcome; the same for both tenants.
    ("admin", "publish", "orders.eu"): A, ("admin", "publish", "payments"): A,
    ("admin", "subscribe", "orders.eu"): A, ("admin", "subscribe", "payments"): A,
    ("admin", "consume", "orders.eu"): A, ("admin", "consume", "payments"): A,
    ("admin", "cache.read", "prices"): A, ("admin", "cache.read", "secrets"): A,
    ("admin", "cache.write", "prices"): A, ("admin", "cache.write", "secrets"): A,
    ("orders", "publish", "orders.eu"): A, ("orders", "publish", "payments"): F,
    ("orders", "subscribe", "orders.eu"): A, ("orders", "subscribe", "payments"): F,
    ("orders", "consume", "orders.eu"): A, ("orders", "consume", "payments"): F,
    ("orders", "cache.read", "prices"): A, ("orders", "cache.read", "secrets"): F,
    ("orders", "cache.write", "prices"): F, ("orders", "cache.write", "secrets"): F,
    ("reader", "publish", "orders.eu"): F, ("reader", "publish", "payments"): F,
    ("reader", "subscribe", "orders.eu"): A, ("reader", "subscribe", "payments"): A,
    ("reader", "consume", "orders.eu"): A, ("reader", "consume", "payments"): A,
    ("reader", "cache.read", "prices"): A, ("reader", "cache.read", "secrets"): A,
    ("reader", "cache.write", "prices"): F, ("reader", "cache.write", "secrets"): F,
}  # fmt: skip
# What a `>` subscription of the namespace receives of admin's publishes to both streams.
WILDCARD_RECEIVES = {"admin": STREAMS, "orders": ["orders.eu"], "reader": STREAMS}


def token(tenant: str, principal: str) -> str:
    return TOKENS[f"{tenant}_{principal}"]


def outcome(f) -> str:
    try:
        f()
    except felix.ForbiddenError:
        return F
    return A


def next_or_none(sub, timeout: float):
    """The next event, or None when none arrives within `timeout` seconds."""
    try:
        return sub.next(timeout=timeout)
    except felix.TimeoutError:
        return None


def run_action(c: felix.Client, ns: str, tenant: str, action: str, resource: str) -> str:
    if action == "publish":
        return outcome(lambda: c.publish(ns, resource, f"{tenant}:{resource}:by-cell".encode()))
    if action == "subscribe":
        return outcome(lambda: c.subscribe(ns, resource).close())
    if action == "consume":
        # The group exists (admin made it): creating one by use needs admin, and the cell is
        # about `consume`, not about creating.
        return outcome(lambda: c.consumer(ns, resource, GROUP).pull(max=1))
    if action == "cache.read":
        return outcome(lambda: c.cache_get(ns, resource, "k"))
    if action == "cache.write":
        return outcome(lambda: c.cache_put(ns, resource, "k", f"{tenant}:{resource}:by-cell".encode()))
    raise AssertionError(action)


def test_rbac_matrix_and_no_cross_tenant_access(jwt_broker):
    b = jwt_broker
    ns = "rbac_" + uuid.uuid4().hex[:10]
    clients = {
        (t, p): b.client(tenant=t, token=token(t, p)) for t in TENANTS for p in PRINCIPALS
    }
    try:
        # Each tenant's admin writes the same names, tagged with its tenant.
        for t in TENANTS:
            admin = clients[(t, "admin")]
            for s in STREAMS:
                admin.publish(ns, s, f"{t}:{s}:seed".encode())
                admin.create_group(ns, s, GROUP)
            for cache in CACHES:
                admin.cache_put(ns, cache, "k", f"{t}:{cache}:seed".encode())

        wrong = []
        cells = 0
        for t in TENANTS:
            for p in PRINCIPALS:
                c = clients[(t, p)]
                for (pp, action, resource), want in EXPECTED.items():
                    if pp != p:
                        continue
                    got = run_action(c, ns, t, action, resource)
                    cells += 1
                    if got != want:
                        wrong.append(f"{t}/{p} {action} {resource}: {got}, expected {want}")
                # The denials failed alone: the client still works where it is allowed.
                c.cache_get(ns, "prices", "k")
        assert cells == len(TENANTS) * len(EXPECTED), cells
        assert not wrong, "RBAC matrix cells wrong:\n  " + "\n  ".join(wrong)

        # Wildcard subscriptions: allowed for every principal with some subscribe grant in the
        # namespace; each receives only the streams it may subscribe to.
        for t in TENANTS:
            subs = {p: clients[(t, p)].subscribe(ns, ">") for p in PRINCIPALS}
            for s in STREAMS:
                clients[(t, "admin")].publish(ns, s, f"{t}:{s}:wild".encode())
            for p, sub in subs.items():
                want = [f"{t}:{s}:wild".encode() for s in WILDCARD_RECEIVES[p]]
                got = [sub.next(timeout=5.0) for _ in want]
                assert [e.payload if e else None for e in got] == want, (t, p)
                assert next_or_none(sub, 0.2) is None, f"{t}/{p} received a stream it may not"
                sub.close()

        # Another tenant: every principal's token is refused for the other tenant.
        for t in TENANTS:
            other = next(o for o in TENANTS if o != t)
            for p in PRINCIPALS:
                with pytest.raises(felix.UnauthorizedError):
                    b.client(tenant=other, token=token(t, p))
        # Another region, and an expired token: refused even for their own tenant.
        for name in ["alpha_other_region", "alpha_expired"]:
            with pytest.raises(felix.UnauthorizedError):
                b.client(tenant="alpha", token=TOKENS[name])

        # Zero cross-tenant reads or writes: everything each tenant reads back is its own.
        for t in TENANTS:
            admin = clients[(t, "admin")]
            for cache in CACHES:
                v = admin.cache_get(ns, cache, "k")
                assert v is not None and v.value.startswith(f"{t}:".encode()), (t, cache, v)
            for s in STREAMS:
                sub = admin.subscribe(ns, s, "earliest")
                seen = []
                while (e := next_or_none(sub, 0.5)) is not None:
                    seen.append(e.payload)
                sub.close()
                assert seen, (t, s)
                assert all(x.startswith(f"{t}:".encode()) for x in seen), (t, s, seen)
                # Its own seed and wildcard publishes are all there.
                assert f"{t}:{s}:seed".encode() in seen and f"{t}:{s}:wild".encode() in seen
    finally:
        for c in clients.values():
            c.close()

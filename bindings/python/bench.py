#!/usr/bin/env python3
"""Cache get latency (p50/p99) and throughput: sync Python, asyncio Python and the Rust core,
against one broker in one run.

    python bindings/python/bench.py [--ops 20000] [--rounds 4] [--concurrency 32] [--json out.json]

Starts target/release/felix-broker (FELIX_BROKER_BIN to override) on a free loopback port and
alternates rounds: `target/release/felix-bench --external-broker ... --only cache.c1,cache.cN`
for the Rust core figures (same key set: namespace `bench`, cache `bench-cache`, 1024 keys of
256 bytes), then the same workload from Python. Each figure is the median over the rounds and
each check the median of its per-round values, so that both sides see the same machine.
Build first:
    cargo build --release -p felix-broker -p felix-bench
    pip install ./bindings/python      # a release build of the binding
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import felix
from felix import _aio

REPO = Path(__file__).resolve().parents[2]
NS, CACHE, KEYS, VALUE = "bench", "bench-cache", [f"k{i:04d}" for i in range(1024)], b"\xc3" * 256


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000.0


def figure(name, lat_ns, elapsed):
    return {"name": name, "ops": len(lat_ns), "p50_us": pct(lat_ns, 0.5), "p99_us": pct(lat_ns, 0.99),
            "ops_per_s": len(lat_ns) / elapsed}  # fmt: skip


def sync_c1(addr, ca, ops, warm):
    with felix.Client(addr, ca_file=ca) as c:
        get, clock = c.cache_get, time.perf_counter_ns
        for i in range(warm):
            get(NS, CACHE, KEYS[i * 7 % 1024])
        lat = []
        start = time.perf_counter()
        for i in range(ops):
            t = clock()
            v = get(NS, CACHE, KEYS[i * 7 % 1024])
            lat.append(clock() - t)
            assert v is not None
        return figure("python sync get c1", lat, time.perf_counter() - start)


async def async_run(addr, ca, ops, warm, conc):
    c = await felix.AsyncClient.connect(addr, ca_file=ca)
    clock = time.perf_counter_ns

    async def worker(w, n, lat):
        off = w * (1024 // conc)
        for i in range(n):
            t = clock()
            v = await c.cache_get(NS, CACHE, KEYS[(off + i * 7) % 1024])
            if lat is not None:
                lat.append(clock() - t)
            assert v is not None

    out = []
    # The binding's floor: an awaited call that does no I/O (hand-off to the runtime and back).
    for _ in range(warm):
        await _aio.op(c._c, c._c.round_trip())
    lat = []
    start = time.perf_counter()
    for _ in range(ops):
        t = clock()
        await _aio.op(c._c, c._c.round_trip())
        lat.append(clock() - t)
    out.append(figure("python async floor (no I/O)", lat, time.perf_counter() - start))
    for cc in (1, conc):
        await asyncio.gather(*(worker(w, warm // cc, None) for w in range(cc)))
        lat: list = []
        start = time.perf_counter()
        await asyncio.gather(*(worker(w, ops // cc, lat) for w in range(cc)))
        out.append(figure(f"python async get c{cc}", lat, time.perf_counter() - start))
    await c.close()
    return out


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--json")
    a = ap.parse_args()
    broker_bin = os.environ.get("FELIX_BROKER_BIN", str(REPO / "target/release/felix-broker"))
    bench_bin = str(REPO / "target/release/felix-bench")
    d = tempfile.mkdtemp(prefix="felix-pybench-")
    ca, addr = os.path.join(d, "ca.pem"), f"127.0.0.1:{free_port()}"
    broker = subprocess.Popen([broker_bin, "--listen", addr, "--no-metrics", "--dev-ca-path", ca],
                              stdout=open(os.path.join(d, "broker.log"), "wb"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with felix.Client(addr, ca_file=ca) as c:
                    c.ping()
                    for k in KEYS:
                        c.cache_put(NS, CACHE, k, VALUE)
                break
            except felix.FelixError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        per_ops, per_warm = max(a.ops // a.rounds, 100), max(a.warmup // a.rounds, 10)
        rounds = []
        for r in range(a.rounds):
            rust_json = os.path.join(d, f"rust{r}.json")
            subprocess.run([bench_bin, "--external-broker", addr, "--ca", ca, "--only", "cache.c1,cache.cN",
                            "--ops", str(per_ops), "--warmup", str(per_warm), "--concurrency", str(a.concurrency),
                            "--rounds", "1", "--json", rust_json], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
            rust = {f["name"]: f for f in json.load(open(rust_json))["figures"]}
            r1 = rust["cache.get.c1"]
            rn = rust[f"cache.get.c{a.concurrency}"]
            rounds.append([
                {"name": "rust core get c1", **{k: r1[k] for k in ("ops", "p50_us", "p99_us", "ops_per_s")}},
                {"name": f"rust core get c{a.concurrency}", **{k: rn[k] for k in ("ops", "p50_us", "p99_us", "ops_per_s")}},
                sync_c1(addr, ca, per_ops, per_warm),
                *asyncio.run(async_run(addr, ca, per_ops, per_warm, a.concurrency)),
            ])  # fmt: skip
    finally:
        broker.terminate()
        broker.wait()
    def med(v):
        v = sorted(v)
        return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

    names = [f["name"] for f in rounds[0]]
    figs = [{"name": n, "ops": sum(r[i]["ops"] for r in rounds),
             **{k: med([r[i][k] for r in rounds]) for k in ("p50_us", "p99_us", "ops_per_s")}}
            for i, n in enumerate(names)]  # fmt: skip
    print(f"medians over {a.rounds} alternating rounds")
    print(f"{'figure':28} {'ops':>7} {'p50 us':>9} {'p99 us':>9} {'ops/s':>10}")
    for f in figs:
        print(f"{f['name']:28} {f['ops']:>7} {f['p50_us']:>9.1f} {f['p99_us']:>9.1f} {f['ops_per_s']:>10.0f}")
    by_round = [{f["name"]: f for f in r} for r in rounds]
    cn = f"c{a.concurrency}"

    def per_round(f):
        return med([f(b) for b in by_round])

    checks = [
        ("sync get p50 - rust p50 (us)",
         per_round(lambda b: b["python sync get c1"]["p50_us"] - b["rust core get c1"]["p50_us"]), "<= 10"),
        ("async get p50 - rust p50 (us)",
         per_round(lambda b: b["python async get c1"]["p50_us"] - b["rust core get c1"]["p50_us"]), "<= 40"),
        (f"async {cn} ops/s / rust",
         per_round(lambda b: b[f"python async get {cn}"]["ops_per_s"] / b[f"rust core get {cn}"]["ops_per_s"]), ">= 0.5"),
    ]  # fmt: skip
    print()
    for name, v, target in checks:
        print(f"{name:34} {v:8.2f}   target {target}")
    if a.json:
        json.dump({"figures": figs, "checks": [dict(name=n, value=v, target=t) for n, v, t in checks]},
                  open(a.json, "w"), indent=2)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

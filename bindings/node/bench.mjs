#!/usr/bin/env node
// Cache get latency (p50/p99) and throughput: Node binding vs the Rust core, same broker,
// one run. Starts a release felix-broker on a free port, then alternates rounds of
// `felix-bench --only cache.c1,cache.cN` against it (the Rust core's figures: cache.get.c1,
// cache.get.c32) and of the same workload through this package: 1024 keys of 256 B, gets at
// concurrency 1 and 32. Figures are medians over the rounds.
//
//   cargo build --release -p felix-broker -p felix-bench && node bench.mjs [--ops N] [--rounds R] [--quick]
//
// Targets (issue 6): Node c1 p50 <= Rust c1 p50 + 30 us; Node c32 throughput >= 0.6x Rust.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const here = path.dirname(fileURLToPath(import.meta.url))
const repo = path.resolve(here, '..', '..')
const require = createRequire(import.meta.url)
const { Client } = require('./lib/index.js')

const argv = process.argv.slice(2)
const flag = (name, dflt) => {
  const i = argv.indexOf(name)
  return i >= 0 ? Number(argv[i + 1]) : dflt
}
const quick = argv.includes('--quick')
const OPS = flag('--ops', quick ? 3000 : 20000)
const WARMUP = flag('--warmup', quick ? 500 : 2000)
const CONC = flag('--concurrency', 32)
const ROUNDS = flag('--rounds', quick ? 2 : 4)
const brokerBin = process.env.FELIX_BROKER_BIN_RELEASE ?? path.join(repo, 'target/release/felix-broker')
const benchBin = process.env.FELIX_BENCH_BIN ?? path.join(repo, 'target/release/felix-bench')
for (const b of [brokerBin, benchBin]) {
  if (!fs.existsSync(b)) {
    console.error(`missing ${b}: run cargo build --release -p felix-broker -p felix-bench`)
    process.exit(2)
  }
}

const NS = 'bench'
const CACHE = 'bench-cache'
const KEYS = Array.from({ length: 1024 }, (_, i) => `k${String(i).padStart(4, '0')}`)
const VALUE = Buffer.alloc(256, 0xc3)

async function freePort() {
  // A UDP port is what QUIC needs; a free TCP port number is free for UDP in practice here.
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => resolve(p))
    })
  })
}

async function startBroker() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'felix-node-bench-'))
  const port = await freePort()
  const ca = path.join(dir, 'ca.pem')
  const log = fs.openSync(path.join(dir, 'broker.log'), 'w')
  const proc = spawn(brokerBin, ['--listen', `127.0.0.1:${port}`, '--no-metrics', '--dev-ca-path', ca], {
    stdio: ['ignore', log, log],
  })
  const addr = `127.0.0.1:${port}`
  const deadline = Date.now() + 20000
  for (;;) {
    if (fs.existsSync(ca)) {
      try {
        const c = await Client.connect({ addresses: [addr], caFile: ca, connectTimeoutMs: 500 })
        c.close()
        break
      } catch {}
    }
    if (Date.now() > deadline) throw new Error(`broker did not start; see ${dir}/broker.log`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return { proc, addr, ca, dir }
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

async function nodeFigure(client, concurrency, ops, warmup) {
  const run = async (total, record) => {
    const lat = record ? new Float64Array(total) : null
    let idx = 0
    const worker = async (w, n) => {
      let k = w * Math.max(1, Math.floor(KEYS.length / concurrency))
      for (let i = 0; i < n; i++) {
        const key = KEYS[(k + i * 7) % KEYS.length]
        const t = process.hrtime.bigint()
        const v = await client.cacheGet(NS, CACHE, key)
        if (record) lat[idx++] = Number(process.hrtime.bigint() - t) / 1000
        if (v === null || v.length !== VALUE.length) throw new Error(`${key}: bad value`)
      }
    }
    const start = process.hrtime.bigint()
    const ws = []
    for (let w = 0; w < concurrency; w++) ws.push(worker(w, Math.floor(total / concurrency) + (w < total % concurrency ? 1 : 0)))
    await Promise.all(ws)
    const secs = Number(process.hrtime.bigint() - start) / 1e9
    return { lat, secs }
  }
  await run(warmup, false)
  const { lat, secs } = await run(ops, true)
  const sorted = Array.from(lat).sort((a, b) => a - b)
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), opsPerSec: ops / secs }
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

const broker = await startBroker()
try {
  // Rounds alternate the Rust core (felix-bench, which also populates the keys) and Node on the
  // same broker, so that both see the same machine; figures are medians over the rounds and
  // each check the median of its per-round values.
  const perOps = Math.max(Math.floor(OPS / ROUNDS), 100)
  const perWarm = Math.max(Math.floor(WARMUP / ROUNDS), 10)
  const client = await Client.connect({ addresses: [broker.addr], caFile: broker.ca })
  const native = require('./index.js')
  const rounds = []
  for (let round = 0; round < ROUNDS; round++) {
    const json = path.join(broker.dir, `rust${round}.json`)
    const r = spawnSync(
      benchBin,
      ['--external-broker', broker.addr, '--ca', broker.ca, '--only', 'cache.c1,cache.cN', '--ops', String(perOps), '--warmup', String(perWarm), '--concurrency', String(CONC), '--rounds', '1', '--json', json],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    )
    if (r.status !== 0) throw new Error(`felix-bench failed (${r.status})`)
    const figs = JSON.parse(fs.readFileSync(json, 'utf8')).figures
    const fig = (name) => figs.find((f) => f.name === name)
    const rust1 = fig('cache.get.c1')
    const rustN = fig(`cache.get.c${CONC}`)
    if (round === 0) for (const k of KEYS) await client.cachePut(NS, CACHE, k, VALUE)
    // The binding's own floor: a promise through the runtime thread and back, no I/O.
    const floor = []
    for (let i = 0; i < perWarm + perOps; i++) {
      const t = process.hrtime.bigint()
      await native.runtimeRoundTrip()
      if (i >= perWarm) floor.push(Number(process.hrtime.bigint() - t) / 1000)
    }
    floor.sort((a, b) => a - b)
    rounds.push({
      rust1: { p50: rust1.p50_us, p99: rust1.p99_us, opsPerSec: rust1.ops_per_s },
      rustN: { p50: rustN.p50_us, p99: rustN.p99_us, opsPerSec: rustN.ops_per_s },
      node1: await nodeFigure(client, 1, perOps, perWarm),
      nodeN: await nodeFigure(client, CONC, perOps, perWarm),
      floor: { p50: quantile(floor, 0.5), p99: quantile(floor, 0.99) },
    })
  }
  client.close()

  const med = (k, f) => median(rounds.map((r) => r[k][f]))
  const row = (name, k) =>
    `${name.padEnd(28)} ${med(k, 'p50').toFixed(1).padStart(9)} ${med(k, 'p99').toFixed(1).padStart(9)} ${Math.round(med(k, 'opsPerSec')).toString().padStart(11)}`
  console.log(`cache get, 256 B values, 1024 keys, ${ROUNDS} alternating rounds of ${perOps} ops per figure (${os.cpus().length} cpus, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}); medians`)
  console.log(`${'figure'.padEnd(28)} ${'p50 us'.padStart(9)} ${'p99 us'.padStart(9)} ${'ops/s'.padStart(11)}`)
  console.log(row('rust core  c1', 'rust1'))
  console.log(row('node       c1', 'node1'))
  console.log(row(`rust core  c${CONC}`, 'rustN'))
  console.log(row(`node       c${CONC}`, 'nodeN'))
  console.log(`binding floor (promise via the runtime thread, no I/O): p50 ${med('floor', 'p50').toFixed(1)} us, p99 ${med('floor', 'p99').toFixed(1)} us`)
  const overhead = median(rounds.map((r) => r.node1.p50 - r.rust1.p50))
  const ratio = median(rounds.map((r) => r.nodeN.opsPerSec / r.rustN.opsPerSec))
  console.log(`c1 p50 overhead: ${overhead.toFixed(1)} us (target <= 30 us): ${overhead <= 30 ? 'met' : 'NOT met'}`)
  console.log(`c${CONC} throughput ratio: ${ratio.toFixed(2)}x (target >= 0.6x): ${ratio >= 0.6 ? 'met' : 'NOT met'}`)
} finally {
  broker.proc.kill('SIGTERM')
}

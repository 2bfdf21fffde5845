'use strict'
// Test helpers: a real felix-broker process per test file, unique namespaces, and waiting on
// conditions with a deadline (never a fixed sleep).
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { Client } = require('..')

const repo = path.resolve(__dirname, '..', '..', '..')
const brokerBin = process.env.FELIX_BROKER_BIN || path.join(repo, 'target', 'debug', 'felix-broker')

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => resolve(p))
    })
  })
}

/**
 * Polls `cond` (sync or async) until it returns a truthy value or `timeoutMs` passes.
 * `what` may be a function, called at the deadline, so the failure can say what the last
 * attempt saw (the error a retried call kept getting) instead of only that time ran out.
 */
async function waitFor(cond, { timeoutMs = 10000, intervalMs = 10, what = 'condition' } = {}) {
  const started = Date.now()
  const deadline = started + timeoutMs
  let attempts = 0
  for (;;) {
    const v = await cond()
    attempts++
    if (v) return v
    if (Date.now() > deadline) {
      const label = typeof what === 'function' ? what() : what
      throw new Error(`timed out after ${Date.now() - started} ms (${attempts} attempts) waiting for ${label}`)
    }
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/**
 * Starts a broker process. `dir` (the dev CA directory) and `port` may be given to restart
 * a broker on the same address with the same certificate.
 */
// `tokens`: TENANT:TOKEN pairs the broker accepts (FELIX_AUTH_TOKENS; tokens never go on a
// command line); the readiness probe uses the first one.
async function startBroker({ args = [], port, dir, tokens } = {}) {
  if (!fs.existsSync(brokerBin)) throw new Error(`no broker at ${brokerBin}: cargo build -p felix-broker`)
  dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'felix-node-test-'))
  port = port || (await freePort())
  const ca = path.join(dir, 'ca.pem')
  const addr = `127.0.0.1:${port}`
  const log = fs.openSync(path.join(dir, 'broker.log'), 'a')
  const proc = spawn(brokerBin, ['--listen', addr, '--no-metrics', '--dev-ca-path', ca, ...args], {
    stdio: ['ignore', log, log],
    env: tokens ? { ...process.env, FELIX_AUTH_TOKENS: tokens } : process.env,
  })
  fs.closeSync(log)
  let exited = false
  proc.on('exit', () => (exited = true))
  const broker = {
    proc,
    addr,
    ca,
    dir,
    port,
    options: (extra = {}) => ({ addresses: [addr], caFile: ca, ...extra }),
    connect: (extra = {}) => Client.connect(broker.options(extra)),
    async stop() {
      if (exited) return
      const done = new Promise((r) => proc.once('exit', r))
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000)
      await done
      clearTimeout(t)
    },
  }
  await waitFor(
    async () => {
      if (exited) throw new Error(`broker exited; see ${dir}/broker.log`)
      if (!fs.existsSync(ca)) return false
      try {
        const c = await Client.connect(broker.options({ connectTimeoutMs: 1000, token: tokens ? tokens.split(',')[0].split(':')[1] : undefined }))
        c.close()
        return true
      } catch (e) {
        // A broker that wants a token answered: it is up (a JWT-mode broker refuses none).
        return e?.code === 'unauthorized'

      }
    },
    { timeoutMs: 30000, intervalMs: 50, what: 'the broker to accept connections' },
  )
  return broker
}

let counter = 0
/** A namespace unique to this test run. */
function uniqueNs(prefix = 't') {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`
}

/** Reads `n` events from a subscription within `timeoutMs`. */
async function take(sub, n, timeoutMs = 5000) {
  const out = []
  const signal = AbortSignal.timeout(timeoutMs)
  while (out.length < n) {
    const ev = await sub.next({ signal })
    if (ev === null) break
    out.push(ev)
  }
  return out
}

module.exports = { repo, brokerBin, startBroker, waitFor, uniqueNs, take, freePort }

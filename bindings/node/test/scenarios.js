'use strict'
// Runner of the language-neutral scenarios (tests/scenarios/*.json, format in the README
// there) over this package. Step keys are checked against schema.json: an unknown or
// missing key fails the scenario, so a typo never turns into a skipped check.
const fs = require('node:fs')
const path = require('node:path')
const { Client } = require('..')

class StepFailure extends Error {}

function payload(p) {
  if (typeof p === 'string') return Buffer.from(p)
  if (p && typeof p === 'object' && typeof p.b64 === 'string') return Buffer.from(p.b64, 'base64')
  if (p && typeof p === 'object' && typeof p.repeat === 'string' && Number.isInteger(p.count)) return Buffer.from(p.repeat.repeat(p.count))
  throw new StepFailure(`malformed payload ${JSON.stringify(p)}`)
}

function show(b) {
  const s = b.toString('utf8')
  const text = Buffer.from(s).equals(b) ? s : `b64:${b.toString('base64')}`
  return text.length > 60 ? `${text.slice(0, 60)}...(${b.length} bytes)` : text
}

function substitute(v, ns) {
  if (typeof v === 'string') return v.split('${ns}').join(ns)
  if (Array.isArray(v)) return v.map((x) => substitute(x, ns))
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substitute(x, ns)]))
  return v
}

function loadSchema(dir) {
  const schema = JSON.parse(fs.readFileSync(path.join(dir, 'schema.json'), 'utf8'))
  const steps = {}
  for (const [k, def] of Object.entries(schema.$defs)) {
    if (k.startsWith('step_')) steps[k.slice(5)] = { allowed: new Set(Object.keys(def.properties)), required: def.required || [] }
  }
  return { top: new Set(Object.keys(schema.properties)), topRequired: schema.required, steps }
}

function validate(sc, schema, file) {
  for (const k of Object.keys(sc)) if (!schema.top.has(k)) throw new StepFailure(`unknown top-level key ${k}`)
  for (const k of schema.topRequired) if (!(k in sc)) throw new StepFailure(`missing top-level key ${k}`)
  if (sc.name !== path.basename(file, '.json')) throw new StepFailure(`name ${sc.name} differs from the file name`)
  if (!Array.isArray(sc.steps) || sc.steps.length === 0) throw new StepFailure('steps must be a non-empty array')
}

function validateStep(step, schema) {
  const def = schema.steps[step.op]
  if (!def) throw new StepFailure(`unknown op ${JSON.stringify(step.op)}`)
  for (const k of Object.keys(step)) if (!def.allowed.has(k)) throw new StepFailure(`unknown key ${k}`)
  for (const k of def.required) if (!(k in step)) throw new StepFailure(`missing key ${k}`)
  if (step.expect_error) {
    const forbidden = ['expect', 'expect_count', 'expect_existed', 'expect_version']
    if (!['connect', 'subscribe'].includes(step.op)) forbidden.push('as')
    for (const k of forbidden) if (k in step) throw new StepFailure(`${k} together with expect_error`)
  }
}

/** Runs one scenario; resolves to null when it passed or to `{index, op, reason}`. */
async function runScenario(file, { addr, ca, index }) {
  const schema = loadSchema(path.dirname(file))
  const clients = new Map()
  const subs = new Map()
  const offsets = new Map()
  const versions = new Map()
  let current = { index: -1, op: '(file)' }
  try {
    const raw = JSON.parse(fs.readFileSync(file, 'utf8'))
    validate(raw, schema, file)
    const ns = `sc_${index}_${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
    const sc = substitute(raw, ns)
    const deadline = Date.now() + (sc.timeout_ms ?? 60000)
    for (let i = 0; i < sc.steps.length; i++) {
      const step = sc.steps[i]
      current = { index: i, op: step && step.op }
      validateStep(step, schema)
      const stepMs = Math.min(step.timeout_ms ?? defaultTimeout(step), Math.max(0, deadline - Date.now()))
      const ctx = { step, ns, clients, subs, offsets, versions, addr, ca, stepMs }
      await withTimeout(runStep(ctx), stepMs + 3000, step.op)
    }
    return null
  } catch (e) {
    return { index: current.index, op: current.op, reason: e instanceof StepFailure ? e.message : `${e.code || ''} ${e.message}` }
  } finally {
    for (const s of subs.values()) s.close()
    for (const c of clients.values()) c.close()
  }
}

function defaultTimeout(step) {
  if (step.op === 'expect_events') return 5000
  if (step.op === 'queue_pull') return (step.wait_ms ?? 0) + 10000
  if (step.op === 'expect_no_event') return step.within_ms + 10000
  return 10000
}

function withTimeout(p, ms, op) {
  let t
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new StepFailure(`${op} timed out after ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(t))
}

/** Runs the step's call, checking expect_error; returns the call's result (or undefined). */
async function call(step, fn) {
  const want = step.expect_error && step.expect_error.code
  let result
  try {
    result = await fn()
  } catch (e) {
    if (!e || typeof e.code !== 'string' || e instanceof StepFailure) throw e
    if (want === e.code) return { failed: true }
    throw new StepFailure(want ? `expected error ${want}, got ${e.code}: ${e.message}` : `unexpected error ${e.code}: ${e.message}`)
  }
  if (want) throw new StepFailure(`expected error ${want}, but the call succeeded`)
  return { failed: false, result }
}

function alias(map, name, kind) {
  if (!map.has(name)) throw new StepFailure(`unknown ${kind} alias ${name}`)
  return map.get(name)
}

function resolveOffsets(ref, offsets) {
  const one = (r) => {
    if (typeof r === 'number') return [r]
    const m = /^([^[\]]+)(?:\[(\d+)\])?$/.exec(r)
    if (!m) throw new StepFailure(`malformed offset reference ${r}`)
    const list = alias(offsets, m[1], 'offset')
    if (m[2] === undefined) return list
    const i = Number(m[2])
    if (i >= list.length) throw new StepFailure(`${r} out of range (${list.length} offsets)`)
    return [list[i]]
  }
  return Array.isArray(ref) ? ref.flatMap(one) : one(ref)
}

function versionOf(ref, versions) {
  return typeof ref === 'number' ? ref : alias(versions, ref, 'version')
}

function checkVersion(v, rel, versions) {
  for (const [op, ref] of Object.entries(rel)) {
    const o = versionOf(ref, versions)
    const ok = { eq: v === o, ne: v !== o, gt: v > o, lt: v < o }[op]
    if (ok === undefined) throw new StepFailure(`unknown version relation ${op}`)
    if (!ok) throw new StepFailure(`version ${v} is not ${op} ${o}`)
  }
}

function eqBytes(got, want, what) {
  if (!got.equals(want)) throw new StepFailure(`${what}: got ${show(got)}, expected ${show(want)}`)
}

async function runStep(ctx) {
  const { step: s, ns, clients, subs, offsets, versions } = ctx
  const ns_ = s.namespace ?? ns
  const client = () => alias(clients, s.client ?? 'default', 'client')
  switch (s.op) {
    case 'connect': {
      const r = await call(s, () => Client.connect({ addresses: [ctx.addr], caFile: ctx.ca, tenant: s.tenant ?? 'default', token: s.token }))
      if (!r.failed) clients.set(s.as ?? 'default', r.result)
      return
    }
    case 'close': {
      if (('client' in s) === ('subscription' in s)) throw new StepFailure('close needs exactly one of client, subscription')
      if (s.client) alias(clients, s.client, 'client').close()
      else {
        alias(subs, s.subscription, 'subscription').close()
        subs.delete(s.subscription)
      }
      return
    }
    case 'publish': {
      if (('payload' in s) === ('payloads' in s)) throw new StepFailure('publish needs exactly one of payload, payloads')
      const ps = 'payload' in s ? [payload(s.payload)] : s.payloads.map(payload)
      await call(s, () => client().publishBatch(ns_, s.stream, ps, { ack: s.ack ?? 'per_batch' }))
      return
    }
    case 'subscribe': {
      const r = await call(s, () => client().subscribe(ns_, s.stream, { from: s.from ?? 'latest' }))
      if (!r.failed) subs.set(s.as, r.result)
      return
    }
    case 'expect_events': {
      if (('payloads' in s) === ('events' in s)) throw new StepFailure('expect_events needs exactly one of payloads, events')
      const sub = alias(subs, s.subscription, 'subscription')
      const want = 'payloads' in s ? s.payloads.map((p) => ({ payload: p })) : s.events
      const signal = AbortSignal.timeout(ctx.stepMs)
      const got = []
      while (got.length < want.length) {
        let ev
        try {
          ev = await sub.next({ signal })
        } catch (e) {
          if (e.code === 'cancelled') throw new StepFailure(`only ${got.length} of ${want.length} events within ${ctx.stepMs} ms`)
          throw new StepFailure(`error after ${got.length} events: ${e.code}: ${e.message}`)
        }
        if (ev === null) throw new StepFailure(`subscription ended after ${got.length} of ${want.length} events`)
        got.push(ev)
      }
      const matches = (ev, w) =>
        ev.payload.equals(payload(w.payload)) && (w.stream === undefined || w.stream === ev.stream) && (w.offset === undefined || w.offset === ev.offset)
      const describe = (ev) => `${show(ev.payload)}@${ev.stream}:${ev.offset}`
      if (s.any_order) {
        const left = [...got]
        for (const w of want) {
          const i = left.findIndex((ev) => matches(ev, w))
          if (i < 0) throw new StepFailure(`no event matches ${JSON.stringify(w)} among ${got.map(describe).join(', ')}`)
          left.splice(i, 1)
        }
      } else {
        want.forEach((w, i) => {
          if (!matches(got[i], w)) throw new StepFailure(`event ${i}: got ${describe(got[i])}, expected ${JSON.stringify(w)}`)
        })
      }
      if (s.expect_error) {
        try {
          const ev = await sub.next({ signal })
          throw new StepFailure(ev === null ? 'subscription ended without an error' : `got event ${describe(ev)}, expected error ${s.expect_error.code}`)
        } catch (e) {
          if (e instanceof StepFailure) throw e
          if (e.code !== s.expect_error.code) throw new StepFailure(`expected error ${s.expect_error.code}, got ${e.code}`)
        }
      }
      return
    }
    case 'expect_no_event': {
      const sub = alias(subs, s.subscription, 'subscription')
      try {
        const ev = await sub.next({ signal: AbortSignal.timeout(s.within_ms) })
        throw new StepFailure(ev === null ? 'subscription ended' : `unexpected event ${show(ev.payload)}`)
      } catch (e) {
        if (e instanceof StepFailure) throw e
        if (e.code !== 'cancelled') throw new StepFailure(`unexpected error ${e.code}`)
      }
      return
    }
    case 'create_stream':
      await call(s, () =>
        client().createStream(ns_, s.stream, { maxRecords: s.max_records, maxBytes: s.max_bytes, subscriberBuffer: s.subscriber_buffer, fullPolicy: s.full_policy }),
      )
      return
    case 'create_cache':
      await call(s, () => client().createCache(ns_, s.cache, { maxBytes: s.max_bytes, defaultTtlMs: s.default_ttl_ms }))
      return
    case 'create_group':
      await call(s, () =>
        client().createGroup(ns_, s.stream, s.group, { from: s.from, ackTimeoutMs: s.ack_timeout_ms, maxDeliveries: s.max_deliveries }),
      )
      return
    case 'queue_pull': {
      const r = await call(s, () => client().consumer(ns_, s.stream, s.group).pull(s.max ?? 100, { waitMs: s.wait_ms ?? 0 }))
      if (r.failed) return
      const msgs = r.result
      if (s.expect) {
        const desc = msgs.map((m) => `${show(m.payload)}#${m.attempt}`).join(', ')
        if (msgs.length !== s.expect.length) throw new StepFailure(`got ${msgs.length} messages [${desc}], expected ${s.expect.length}`)
        s.expect.forEach((w, i) => {
          eqBytes(msgs[i].payload, payload(w.payload), `message ${i}`)
          if (w.attempt !== undefined && w.attempt !== msgs[i].attempt) throw new StepFailure(`message ${i}: attempt ${msgs[i].attempt}, expected ${w.attempt}`)
        })
      }
      if (s.as) offsets.set(s.as, msgs.map((m) => m.offset))
      return
    }
    case 'queue_ack':
    case 'queue_nack':
    case 'queue_redrive': {
      const c = client().consumer(ns_, s.stream, s.group)
      const o = s.offsets === undefined ? undefined : resolveOffsets(s.offsets, offsets)
      const r = await call(s, () =>
        s.op === 'queue_ack' ? c.ack(o) : s.op === 'queue_nack' ? c.nack(o, { delayMs: s.delay_ms ?? 0 }) : c.redrive(o),
      )
      if (!r.failed && s.expect_count !== undefined && r.result !== s.expect_count) {
        throw new StepFailure(`count ${r.result}, expected ${s.expect_count}`)
      }
      return
    }
    case 'dead_letters': {
      const r = await call(s, () => client().consumer(ns_, s.stream, s.group).deadLetters(s.max ?? 100))
      if (r.failed) return
      const dls = r.result
      if (!s.expect) throw new StepFailure('dead_letters needs expect')
      if (dls.length !== s.expect.length) throw new StepFailure(`got ${dls.length} dead letters, expected ${s.expect.length}`)
      s.expect.forEach((w, i) => {
        eqBytes(dls[i].payload, payload(w.payload), `dead letter ${i}`)
        if (w.attempts !== undefined && w.attempts !== dls[i].attempts) throw new StepFailure(`dead letter ${i}: attempts ${dls[i].attempts}, expected ${w.attempts}`)
        if (w.reason !== undefined && w.reason !== dls[i].reason) throw new StepFailure(`dead letter ${i}: reason ${dls[i].reason}, expected ${w.reason}`)
      })
      if (s.as) offsets.set(s.as, dls.map((d) => d.offset))
      return
    }
    case 'cache_put': {
      if (s.if_absent !== undefined && s.if_version !== undefined) throw new StepFailure('at most one of if_absent, if_version')
      const opts = { ttlMs: s.ttl_ms, ifAbsent: s.if_absent, ifVersion: s.if_version === undefined ? undefined : versionOf(s.if_version, versions) }
      const r = await call(s, () => client().cachePut(ns_, s.cache, s.key, payload(s.value), opts))
      if (r.failed) return
      if (s.expect_version) checkVersion(r.result, s.expect_version, versions)
      if (s.as) versions.set(s.as, r.result)
      return
    }
    case 'cache_get': {
      const r = await call(s, () => client().cacheGetEntry(ns_, s.cache, s.key))
      if (r.failed) return
      if (!('expect' in s)) throw new StepFailure('cache_get needs expect')
      const e = r.result
      if (s.expect === null) {
        if (e !== null) throw new StepFailure(`expected a miss, got ${show(e.value)}`)
      } else {
        if (e === null) throw new StepFailure(`expected ${show(payload(s.expect))}, got a miss`)
        eqBytes(e.value, payload(s.expect), 'value')
      }
      if ((s.expect_version || s.as) && e === null) throw new StepFailure('expect_version and as need a hit')
      if (s.expect_version) checkVersion(e.version, s.expect_version, versions)
      if (s.as) versions.set(s.as, e.version)
      return
    }
    case 'cache_delete': {
      const r = await call(s, () => client().cacheDelete(ns_, s.cache, s.key))
      if (!r.failed && s.expect_existed !== undefined && r.result !== s.expect_existed) {
        throw new StepFailure(`existed ${r.result}, expected ${s.expect_existed}`)
      }
      return
    }
    case 'cache_get_many': {
      const r = await call(s, () => client().cacheGetMany(ns_, s.cache, s.keys))
      if (r.failed) return
      if (!s.expect) throw new StepFailure('cache_get_many needs expect')
      if (r.result.length !== s.expect.length) throw new StepFailure(`got ${r.result.length} results, expected ${s.expect.length}`)
      s.expect.forEach((w, i) => {
        const got = r.result[i]
        if (w === null) {
          if (got !== null) throw new StepFailure(`key ${s.keys[i]}: expected a miss, got ${show(got.value)}`)
        } else {
          if (got === null) throw new StepFailure(`key ${s.keys[i]}: expected ${show(payload(w))}, got a miss`)
          eqBytes(got.value, payload(w), `key ${s.keys[i]}`)
        }
      })
      return
    }
    case 'wait_until_cache_miss': {
      const end = Date.now() + s.timeout_ms
      for (;;) {
        const r = await call(s, () => client().cacheGet(ns_, s.cache, s.key))
        if (r.failed || r.result === null) return
        if (Date.now() > end) throw new StepFailure(`still a hit after ${s.timeout_ms} ms`)
        await new Promise((res) => setTimeout(res, 20))
      }
    }
    default:
      throw new StepFailure(`unknown op ${s.op}`)
  }
}

module.exports = { runScenario }

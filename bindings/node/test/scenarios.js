'use strict'
// Runner of the language-neutral scenarios (tests/scenarios/*.json, format in the README
// there) over this package. It is as strict as the reference runner (broker/tests/scenarios):
// the whole scenario, every nested entry included, is checked against schema.json (an unknown
// key anywhere, a wrong type or a missing key fails the scenario, so a typo never turns into
// a skipped check), expect_error is honoured by every op, and each step's deadline is its
// own `timeout_ms`.
const fs = require('node:fs')
const path = require('node:path')
const { Client, ERROR_CODES } = require('..')
const { SchemaChecker } = require('./schema-check.js')

class StepFailure extends Error {}

/** Every op this runner executes (compared with schema.json's by the self-check). */
const OPS = [
  'connect', 'close', 'publish', 'subscribe', 'expect_events', 'expect_no_event', 'create_stream', 'create_cache',
  'create_group', 'queue_pull', 'queue_ack', 'queue_nack', 'queue_redrive', 'dead_letters', 'cache_put', 'cache_get',
  'cache_delete', 'cache_get_many', 'wait_until_cache_miss',
]
/** Keys that check or store a result: nothing to check or store on a step expected to fail. */
const RESULT_KEYS = ['as', 'expect', 'expect_count', 'expect_existed', 'expect_version']
/** Ops whose `expect` is required unless the step has expect_error. */
const EXPECT_REQUIRED = ['cache_get', 'cache_get_many', 'dead_letters']
/** Ops that watch their own deadline and say how far they got; the outer deadline is a net. */
const OWN_DEADLINE = ['expect_events', 'expect_no_event', 'wait_until_cache_miss']
const DEFAULT_STEP_MS = 10000
const DEFAULT_EVENTS_MS = 5000
const DEFAULT_SCENARIO_MS = 60000
const SAFETY_MS = 5000

function payload(p) {
  if (typeof p === 'string') return Buffer.from(p)
  if (p && typeof p === 'object' && typeof p.b64 === 'string' && Object.keys(p).length === 1) {
    const b = Buffer.from(p.b64, 'base64')
    // Node decodes leniently (skips bad characters, tolerates missing padding): insist on the
    // canonical standard encoding, as the other runners do.
    if (b.toString('base64') !== p.b64) throw new StepFailure(`payload b64 ${JSON.stringify(p.b64)} is not canonical standard base64`)
    return b
  }
  if (p && typeof p === 'object' && typeof p.repeat === 'string' && p.repeat !== '' && Number.isInteger(p.count) && p.count >= 0 && Object.keys(p).length === 2) {
    return Buffer.from(p.repeat.repeat(p.count))
  }
  throw new StepFailure(`malformed payload ${JSON.stringify(p)}`)
}

function show(b) {
  const s = b.toString('utf8')
  const text = Buffer.from(s).equals(b) ? JSON.stringify(s) : `b64:${b.toString('base64')}`
  return text.length > 60 ? `${text.slice(0, 60)}...(${b.length} bytes)` : text
}

function substitute(v, ns) {
  if (typeof v === 'string') return v.split('${ns}').join(ns)
  if (Array.isArray(v)) return v.map((x) => substitute(x, ns))
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substitute(x, ns)]))
  return v
}

const schemas = new Map()
function loadSchema(dir) {
  if (!schemas.has(dir)) {
    const root = JSON.parse(fs.readFileSync(path.join(dir, 'schema.json'), 'utf8'))
    const ops = root.$defs.step.properties.op.enum
    schemas.set(dir, { checker: new SchemaChecker(root), root, ops })
  }
  return schemas.get(dir)
}

/** The brokers a scenario may ask for with `broker` (tests/scenarios/README.md, "Brokers"). */
const BROKERS = ['dev', 'jwt']

/** The top level of a scenario (its steps are checked one by one as they run). */
function validate(sc, schema, stem) {
  if (!sc || typeof sc !== 'object' || Array.isArray(sc)) throw new StepFailure('a scenario must be a JSON object')
  const props = schema.root.properties
  for (const k of Object.keys(sc)) if (!(k in props)) throw new StepFailure(`unknown top-level key ${JSON.stringify(k)}`)
  if ('broker' in sc && !BROKERS.includes(sc.broker)) {
    throw new StepFailure(`unknown broker ${JSON.stringify(sc.broker)} (one of ${BROKERS.join(', ')})`)
  }
  for (const k of schema.root.required) if (!(k in sc)) throw new StepFailure(`missing top-level key ${k}`)
  for (const [k, def] of Object.entries(props)) {
    if (k === 'steps' || !(k in sc)) continue
    const why = schema.checker.check(sc[k], def, k)
    if (why) throw new StepFailure(why)
  }
  if (sc.name !== stem) throw new StepFailure(`name ${JSON.stringify(sc.name)} differs from the file name ${JSON.stringify(stem)}`)
  if (!Array.isArray(sc.steps) || sc.steps.length === 0) throw new StepFailure('steps must be a non-empty array')
}

function validateStep(step, schema, i) {
  if (!step || typeof step !== 'object' || Array.isArray(step)) throw new StepFailure('a step must be an object')
  if (typeof step.op !== 'string') throw new StepFailure('a step needs a string op')
  if (!schema.ops.includes(step.op) || !OPS.includes(step.op)) throw new StepFailure(`unknown op ${JSON.stringify(step.op)}`)
  if ('expect_error' in step) {
    const e = step.expect_error
    if (!e || typeof e !== 'object' || Object.keys(e).join() !== 'code' || typeof e.code !== 'string') {
      throw new StepFailure('expect_error must be {"code": "..."}')
    }
    if (!ERROR_CODES.includes(e.code)) throw new StepFailure(`expect_error names unknown code ${JSON.stringify(e.code)}`)
    // `as` of connect and subscribe names the handle, not a result.
    const k = RESULT_KEYS.find((k) => k in step && !(k === 'as' && ['connect', 'subscribe'].includes(step.op)))
    if (k) throw new StepFailure(`${k} cannot be combined with expect_error`)
    if (step.op === 'expect_no_event') throw new StepFailure('expect_no_event cannot expect an error')
  } else if (EXPECT_REQUIRED.includes(step.op) && !('expect' in step)) {
    throw new StepFailure(`${step.op} needs expect (unless it has expect_error)`)
  }
  // Everything else, at every depth: keys, types, ranges, exclusive keys.
  const why = schema.checker.check(step, { $ref: '#/$defs/step' }, `steps[${i}]`)
  if (why) throw new StepFailure(why)
}

/** Runs one scenario file; resolves to null when it passed or to `{index, op, reason}`. */
async function runScenario(file, opts) {
  let raw
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    return { index: -1, op: '(file)', reason: `cannot read: ${e.message}` }
  }
  return runDoc(raw, path.basename(file, '.json'), { ...opts, dir: path.dirname(file) })
}

/**
 * Runs one scenario given as parsed JSON; `stem` is its file name without `.json`, `dir` the
 * folder holding schema.json.
 */
async function runDoc(raw, stem, { addr, ca, index, dir, jwt }) {
  const clients = new Map()
  const subs = new Map()
  const offsets = new Map()
  const versions = new Map()
  let current = { index: -1, op: '(file)' }
  let timer
  let over = false
  try {
    const schema = loadSchema(dir)
    validate(raw, schema, stem)
    if (raw.broker === 'jwt') {
      // The JWT-mode broker of the auth scenarios, started by the caller on first use.
      if (!jwt) throw new StepFailure('the scenario needs the jwt broker, which this run has not')
      ;({ addr, ca } = await jwt())
    }
    const ns = `sc_${index}_${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
    const sc = substitute(raw, ns)
    const scenarioMs = sc.timeout_ms ?? DEFAULT_SCENARIO_MS
    const steps = (async () => {
      for (let i = 0; i < sc.steps.length && !over; i++) {
        const step = sc.steps[i]
        current = { index: i, op: step && step.op }
        validateStep(step, schema, i)
        const stepMs = step.timeout_ms ?? defaultTimeout(step)
        const outer = OWN_DEADLINE.includes(step.op) ? stepMs + SAFETY_MS : stepMs
        const ctx = { step, ns, clients, subs, offsets, versions, addr, ca, stepMs }
        await withTimeout(runStep(ctx), outer, `timed out after ${outer} ms`)
      }
    })()
    await Promise.race([
      steps,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new StepFailure(`scenario timed out after ${scenarioMs} ms`)), scenarioMs)
      }),
    ])
    return null
  } catch (e) {
    return { index: current.index, op: current.op, reason: e instanceof StepFailure ? e.message : `${e.code || ''} ${e.message}` }
  } finally {
    over = true
    clearTimeout(timer)
    for (const s of subs.values()) s.close()
    for (const c of clients.values()) c.close()
  }
}

function defaultTimeout(step) {
  if (step.op === 'expect_events') return DEFAULT_EVENTS_MS
  if (step.op === 'queue_pull') return (step.wait_ms ?? 0) + DEFAULT_STEP_MS
  if (step.op === 'expect_no_event') return step.within_ms + DEFAULT_STEP_MS
  return DEFAULT_STEP_MS
}

function withTimeout(p, ms, reason) {
  let t
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new StepFailure(reason)), ms)
    }),
  ]).finally(() => clearTimeout(t))
}

/** Runs the step's call, checking expect_error; returns `{failed, result}`. */
async function call(step, fn) {
  const want = step.expect_error && step.expect_error.code
  let result
  try {
    result = await fn()
  } catch (e) {
    if (!e || typeof e.code !== 'string' || e instanceof StepFailure) throw e
    if (want === e.code) return { failed: true }
    throw new StepFailure(want ? `expected error ${want}, got (${e.code}) ${e.message}` : `unexpected error (${e.code}) ${e.message}`)
  }
  if (want) throw new StepFailure(`expected error ${want}, but the step succeeded`)
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
    if (i >= list.length) throw new StepFailure(`offset reference ${JSON.stringify(r)}: alias ${JSON.stringify(m[1])} holds ${list.length} offsets`)
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

const describe = (ev) => `${ev.stream}@${ev.offset} ${show(ev.payload)}`
const describeWant = (w) => `${w.stream ?? '*'}@${w.offset ?? '*'} ${show(w.bytes)}`

/**
 * `expect_events`: the next N events, compared in full (every byte of the payload, the stream
 * and offset when given) in order as they arrive, or as a multiset with any_order. An error
 * or the end of the subscription before the N-th event fails the step, even when the step
 * expects that error (it must come after the events).
 */
async function expectEvents(s, sub, stepMs) {
  const want = ('payloads' in s ? s.payloads.map((p) => ({ payload: p })) : s.events).map((w) => ({ ...w, bytes: payload(w.payload) }))
  const matches = (ev, w) => Buffer.isBuffer(ev.payload) && ev.payload.equals(w.bytes) && (w.stream === undefined || w.stream === ev.stream) && (w.offset === undefined || w.offset === ev.offset)
  const signal = AbortSignal.timeout(stepMs)
  const got = []
  const progress = () => `${got.length} of ${want.length} events received [${got.map(describe).join(', ')}]`
  while (got.length < want.length) {
    let ev
    try {
      ev = await sub.next({ signal })
    } catch (e) {
      if (signal.aborted && e.code === 'cancelled') throw new StepFailure(`timed out after ${stepMs} ms: ${progress()}`)
      throw new StepFailure(`subscription error (${e.code}) ${e.message}: ${progress()}`)
    }
    if (ev === null) throw new StepFailure(`subscription ended: ${progress()}`)
    if (!s.any_order && !matches(ev, want[got.length])) {
      throw new StepFailure(`event ${got.length} is ${describe(ev)}, expected ${describeWant(want[got.length])}`)
    }
    got.push(ev)
  }
  if (s.any_order) {
    const used = want.map(() => false)
    for (const ev of got) {
      const i = want.findIndex((w, i) => !used[i] && matches(ev, w))
      if (i < 0) {
        const missing = want.filter((_, i) => !used[i]).map(describeWant)
        throw new StepFailure(`unexpected event ${describe(ev)} (still expected: ${missing.join(', ')})`)
      }
      used[i] = true
    }
  }
  if (s.expect_error) {
    let ev
    try {
      ev = await sub.next({ signal })
    } catch (e) {
      if (signal.aborted && e.code === 'cancelled') throw new StepFailure(`timed out after ${stepMs} ms waiting for the error`)
      if (e.code === s.expect_error.code) return
      throw new StepFailure(`expected error ${s.expect_error.code}, got (${e.code}) ${e.message}`)
    }
    throw new StepFailure(ev === null ? 'subscription ended without an error' : `expected an error, got event ${describe(ev)}`)
  }
}


async function runStep(ctx) {
  const { step: s, ns, clients, subs, offsets, versions } = ctx
  const ns_ = s.namespace ?? ns
  const client = () => alias(clients, s.client ?? 'default', 'client')
  switch (s.op) {
    case 'connect': {
      const r = await call(s, () => Client.connect({ addresses: [ctx.addr], caFile: ctx.ca, tenant: s.tenant ?? 'default', token: s.token }))
      if (r.failed) return
      const name = s.as ?? 'default'
      if (clients.has(name)) clients.get(name).close()
      clients.set(name, r.result)
      return
    }
    case 'close': {
      if (('client' in s) === ('subscription' in s)) throw new StepFailure('close needs exactly one of client, subscription')
      // Through call() like every op: a close cannot fail, so expect_error on it fails.
      if ('client' in s) {
        const c = alias(clients, s.client, 'client')
        await call(s, () => c.close())
      } else {
        const sub = alias(subs, s.subscription, 'subscription')
        const r = await call(s, () => sub.close())
        if (!r.failed) subs.delete(s.subscription)
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
    case 'expect_events':
      return expectEvents(s, alias(subs, s.subscription, 'subscription'), ctx.stepMs)
    case 'expect_no_event': {
      const sub = alias(subs, s.subscription, 'subscription')
      const signal = AbortSignal.timeout(s.within_ms)
      let ev
      try {
        ev = sub.tryNext() ?? (await sub.next({ signal }))
      } catch (e) {
        if (signal.aborted && e.code === 'cancelled') return
        throw new StepFailure(`unexpected subscription error (${e.code}) ${e.message}`)
      }
      throw new StepFailure(ev === null ? 'the subscription ended' : `unexpected event ${describe(ev)}`)
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
        if (msgs.length !== s.expect.length) throw new StepFailure(`pulled ${msgs.length} messages, expected ${s.expect.length}: [${desc}]`)
        s.expect.forEach((w, i) => {
          const p = payload(w.payload)
          if (!Buffer.isBuffer(msgs[i].payload) || !msgs[i].payload.equals(p) || (w.attempt !== undefined && w.attempt !== msgs[i].attempt)) {
            throw new StepFailure(`message ${i} is ${show(msgs[i].payload)} attempt ${msgs[i].attempt}, expected ${show(p)} attempt ${w.attempt ?? '*'}; pulled [${desc}]`)
          }
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
        throw new StepFailure(`count is ${r.result}, expected ${s.expect_count}`)
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
        const d = dls[i]
        const p = payload(w.payload)
        if (!Buffer.isBuffer(d.payload) || !d.payload.equals(p) || (w.attempts !== undefined && w.attempts !== d.attempts) || (w.reason !== undefined && w.reason !== d.reason)) {
          throw new StepFailure(`dead letter ${i} does not match ${JSON.stringify(w)}; got ${show(d.payload)} attempts ${d.attempts} reason ${d.reason}`)
        }
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
        if (e !== null) throw new StepFailure(`got ${show(e.value)} (version ${e.version}), expected a miss`)
      } else {
        const want = payload(s.expect)
        if (e === null) throw new StepFailure(`got a miss, expected ${show(want)}`)
        if (!e.value.equals(want)) throw new StepFailure(`got ${show(e.value)} (version ${e.version}), expected ${show(want)}`)
      }
      if ((s.expect_version || s.as) && e === null) throw new StepFailure('expect_version and as need a hit')
      if (s.expect_version) checkVersion(e.version, s.expect_version, versions)
      if (s.as) versions.set(s.as, e.version)
      return
    }
    case 'cache_delete': {
      const r = await call(s, () => client().cacheDelete(ns_, s.cache, s.key))
      if (!r.failed && s.expect_existed !== undefined && r.result !== s.expect_existed) {
        throw new StepFailure(`delete reported existed = ${r.result}, expected ${s.expect_existed}`)
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
        const want = w === null ? null : payload(w)
        if (want === null ? got !== null : got === null || !got.value.equals(want)) {
          const shown = (b) => (b === null ? 'a miss' : show(b))
          throw new StepFailure(`key ${JSON.stringify(s.keys[i])}: got ${shown(got && got.value)}, expected ${shown(want)}`)
        }
      })
      return
    }
    case 'wait_until_cache_miss': {
      const end = Date.now() + s.timeout_ms
      for (;;) {
        const r = await call(s, () => client().cacheGet(ns_, s.cache, s.key))
        if (r.failed || r.result === null) return
        if (Date.now() > end) throw new StepFailure(`${JSON.stringify(s.key)} still holds ${show(r.result)} after ${s.timeout_ms} ms`)
        await new Promise((res) => setTimeout(res, 20))
      }
    }
    default:
      throw new StepFailure(`unknown op ${s.op}`)
  }
}

module.exports = { runScenario, runDoc, loadSchema, OPS, StepFailure }

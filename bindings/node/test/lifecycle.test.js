'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const path = require('node:path')
const { startBroker, uniqueNs, waitFor, take } = require('./helpers.js')

let broker
test.before(async () => {
  broker = await startBroker()
})
test.after(() => broker.stop())

function runChild(source, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', source], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const killer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`child did not exit within 30 s; output:\n${out}`))
    }, 30000)
    child.on('exit', (code) => {
      clearTimeout(killer)
      resolve({ code, out })
    })
  })
}

test('a process with a pending subscription exits after close()', async () => {
  const pkg = path.resolve(__dirname, '..')
  const source = `
    const { Client } = require(${JSON.stringify(pkg)})
    ;(async () => {
      const client = await Client.connect({ addresses: [process.env.ADDR], caFile: process.env.CA })
      const sub = await client.subscribe('lifecycle', 'never')
      const consumer = client.consumer('lifecycle', 'never', 'g')
      const loop = (async () => { for await (const _ of sub) {} console.log('loop ended') })()
      const pull = consumer.pull(1, { waitMs: 60000 }).catch((e) => console.log('pull', e.code))
      setTimeout(() => { client.close(); console.log('closed') }, 200)
      await Promise.all([loop, pull])
    })()
  `
  // The bound is runChild's: a process a pending call kept alive would never exit.
  const { code, out } = await runChild(source, { ADDR: broker.addr, CA: broker.ca })
  assert.equal(code, 0, out)
  assert.match(out, /closed/)
  assert.match(out, /loop ended/)
  // A pull in flight at close() fails with closed, or unavailable when the core sees the
  // connection drop first (Client::call races the two; reported to the core).
  assert.match(out, /pull (closed|unavailable)/)
})

test('an idle client does not hold the process open', async () => {
  const pkg = path.resolve(__dirname, '..')
  const source = `
    const { Client } = require(${JSON.stringify(pkg)})
    Client.connect({ addresses: [process.env.ADDR], caFile: process.env.CA }).then(async (c) => {
      await c.subscribe('lifecycle', 'idle')
      console.log('connected')
    })
  `
  const { code, out } = await runChild(source, { ADDR: broker.addr, CA: broker.ca })
  assert.equal(code, 0, out)
  assert.match(out, /connected/)
})

test('the event loop keeps running while calls wait', async () => {
  // A native call that blocked the thread would settle before any timer could run: timers
  // firing while the long poll is still pending show the loop is free. No speed is
  // measured; the long poll is far longer than the three ticks need even on a loaded machine.
  const client = await broker.connect()
  let settled = false
  const started = Date.now()
  const pull = client
    .consumer(uniqueNs(), 's', 'g')
    .pull(1, { waitMs: 3000 })
    .finally(() => (settled = true))
  let ticks = 0
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      if (settled || ++ticks === 3) {
        clearInterval(timer)
        resolve()
      }
    }, 20)
  })
  assert.equal(settled, false, `the pull settled before the event loop ran ${ticks} timer ticks`)
  assert.deepEqual(await pull, [])
  const elapsed = Date.now() - started
  assert.ok(elapsed >= 2500, `the 3000 ms long poll returned after ${elapsed} ms`)
  client.close()
})

test('the client reconnects after a broker restart on the same address', async () => {
  const first = await startBroker()
  let second
  try {
    const client = await first.connect({ reconnectInitialMs: 20, reconnectMaxMs: 200 })
    const ns = uniqueNs()
    const sub = await client.subscribe(ns, 'events')
    await client.publish(ns, 'events', 'before')
    assert.equal((await take(sub, 1))[0].payload.toString(), 'before')
    await first.stop()
    await assert.rejects(client.cacheGet(ns, 'c', 'k'), (e) => e.retryable === true)
    second = await startBroker({ port: first.port, dir: first.dir })
    let last = 'none'
    await waitFor(
      async () => {
        try {
          await client.cachePut(ns, 'c', 'k', 'v')
          return true
        } catch (e) {
          if (!e.retryable) throw e
          last = `${e.code}: ${e.message}`
          return false
        }
      },
      { timeoutMs: 20000, what: () => `the client to reconnect (last error ${last})` },
    )
    // The subscription resubscribes on its own; publish until it sees an event again. Only
    // this loop's own 500 ms abort means "not yet": the subscription ending (null) or failing
    // for good fails the test at once, with its reason, rather than as a timeout 20 s later.
    let got = null
    last = 'none'
    await waitFor(
      async () => {
        try {
          await client.publish(ns, 'events', 'after')
        } catch (e) {
          if (!e.retryable) throw e
          last = `publish ${e.code}: ${e.message}`
          return false
        }
        try {
          got = await sub.next({ signal: AbortSignal.timeout(500) })
        } catch (e) {
          if (e.code !== 'cancelled') throw e
          last = 'no event within 500 ms'
          return false
        }
        assert.notEqual(got, null, 'the subscription ended instead of resuming')
        return got
      },
      { timeoutMs: 20000, what: () => `the subscription to resume (last: ${last})` },
    )
    assert.equal(got.payload.toString(), 'after')
    client.close()
  } finally {
    await first.stop()
    if (second) await second.stop()
  }
})

test('a broker restart is reported as a reset gap before the new log\'s first event', async () => {
  const first = await startBroker()
  let second
  try {
    const client = await first.connect({ reconnectInitialMs: 20, reconnectMaxMs: 200 })
    const ns = uniqueNs()
    const sub = await client.subscribe(ns, 'g')
    await client.publish(ns, 'g', 'old-0')
    await client.publish(ns, 'g', 'old-1')
    assert.deepEqual((await take(sub, 2)).map((e) => e.offset), [0, 1])
    await first.stop()
    second = await startBroker({ port: first.port, dir: first.dir })
    let last = 'none'
    await waitFor(
      async () => {
        try {
          await client.publish(ns, 'g', 'new-0')
          return true
        } catch (e) {
          if (!e.retryable) throw e
          last = `${e.code}: ${e.message}`
          return false
        }
      },
      { timeoutMs: 20000, what: () => `a publish after the restart (last error ${last})` },
    )
    const ev = await sub.next({ signal: AbortSignal.timeout(20000) })
    assert.equal(ev.offset, 0)
    assert.equal(ev.payload.toString(), 'new-0')
    // Taken right after the new log's first event: the reset before it.
    assert.deepEqual(sub.takeGaps(), [{ stream: 'g', from: 2, to: 0, reset: true }])
    assert.deepEqual(sub.takeGaps(), [])
    client.close()
  } finally {
    await first.stop()
    if (second) await second.stop()
  }
})

'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { Client, FelixError } = require('..')
const { startBroker, uniqueNs, freePort } = require('./helpers.js')

let broker
test.before(async () => {
  broker = await startBroker()
})
test.after(() => broker.stop())

const isCancelled = (reason) => (e) => {
  assert.ok(e instanceof FelixError)
  assert.equal(e.code, 'cancelled')
  if (reason !== undefined) assert.equal(e.cause, reason)
  return true
}

test('aborting a pending next rejects with cancelled and loses no event', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  const sub = await client.subscribe(ns, 's')
  const ctl = new AbortController()
  const pending = sub.next({ signal: ctl.signal })
  const reason = new Error('stop waiting')
  setTimeout(() => ctl.abort(reason), 50)
  await assert.rejects(pending, isCancelled(reason))
  await client.publish(ns, 's', 'later')
  assert.equal((await sub.next()).payload.toString(), 'later')
  await assert.rejects(sub.next({ signal: AbortSignal.abort() }), isCancelled())
  client.close()
})

test('aborting a long poll returns promptly', async () => {
  const client = await broker.connect()
  const c = client.consumer(uniqueNs(), 'empty', 'g')
  const started = Date.now()
  await assert.rejects(c.pull(1, { waitMs: 20000, signal: AbortSignal.timeout(100) }), isCancelled())
  assert.ok(Date.now() - started < 5000)
  client.close()
})

test('a signal ends for-await loops; close() ends a consumer loop quietly', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  const sub = await client.subscribe(ns, 's')
  await assert.rejects(async () => {
    for await (const _ of sub.events({ signal: AbortSignal.timeout(100) })) {
      assert.fail('no event was published')
    }
  }, isCancelled())
  const c = client.consumer(ns, 'q', 'g')
  setTimeout(() => c.close(), 100)
  let n = 0
  for await (const _ of c.messages({ waitMs: 10000 })) n++
  assert.equal(n, 0)
  client.close()
})

test('connect and ping take a signal', async () => {
  const port = await freePort()
  await assert.rejects(
    Client.connect({ addresses: [`127.0.0.1:${port}`], caFile: broker.ca, connectTimeoutMs: 20000, signal: AbortSignal.timeout(100) }),
    isCancelled(),
  )
  const client = await broker.connect()
  await assert.rejects(client.ping({ signal: AbortSignal.abort() }), isCancelled())
  assert.equal(typeof (await client.ping({ signal: AbortSignal.timeout(5000) })), 'number')
  client.close()
})

'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { startBroker, uniqueNs, waitFor } = require('./helpers.js')

let broker
test.before(async () => {
  broker = await startBroker()
})
test.after(() => broker.stop())

test('put with a TTL expires; without one it stays', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  // Bounded from both sides: present right after the put, gone within 10 s, and not gone
  // before its TTL (minus slack for the clocks). A TTL unit error fails one of them: 1000
  // taken as 1000 s never expires; taken as 1 ms it may still be read right after the put on
  // a fast loopback, but it is gone long before the lower bound. A loaded machine only makes
  // the expiry look later, never earlier.
  const putAt = Date.now()
  await client.cachePut(ns, 'sessions', 'short', 'v', { ttlMs: 1000 })
  assert.equal(String(await client.cacheGet(ns, 'sessions', 'short')), 'v')
  await client.cachePut(ns, 'sessions', 'long', Buffer.from([0, 255]))
  await waitFor(async () => (await client.cacheGet(ns, 'sessions', 'short')) === null, {
    timeoutMs: 10000,
    what: 'the entry to expire',
  })
  const lived = Date.now() - putAt
  assert.ok(lived >= 900, `an entry with a 1000 ms TTL expired after ${lived} ms`)
  assert.deepEqual([...(await client.cacheGet(ns, 'sessions', 'long'))], [0, 255])
  client.close()
})

test('cache default TTL, compare-and-set, put-if-absent, delete, multi-get', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  await client.createCache(ns, 'c', { defaultTtlMs: 2000, maxBytes: 1 << 20 })
  const v1 = await client.cachePut(ns, 'c', 'k', 'one')
  const e = await client.cacheGetEntry(ns, 'c', 'k')
  assert.ok(e !== null, 'an entry under a 2 s default TTL missed right after its put')
  assert.equal(e.value.toString(), 'one')
  assert.equal(e.version, v1)
  const v2At = Date.now()
  const v2 = await client.cachePut(ns, 'c', 'k', 'two', { ifVersion: v1 })
  assert.ok(v2 > v1)
  await assert.rejects(client.cachePut(ns, 'c', 'k', 'three', { ifVersion: v1 }), { code: 'conflict', retryable: false })
  await assert.rejects(client.cachePut(ns, 'c', 'k', 'x', { ifAbsent: true }), { code: 'conflict' })
  await client.cachePut(ns, 'c', 'fresh', 'f', { ifAbsent: true })
  const many = await client.cacheGetMany(ns, 'c', ['k', 'missing', 'fresh'])
  assert.deepEqual(many.map((m) => m && m.value.toString()), ['two', null, 'f'])
  assert.equal(await client.cacheDelete(ns, 'c', 'fresh'), true)
  assert.equal(await client.cacheDelete(ns, 'c', 'fresh'), false)
  assert.equal(await client.cacheGet(ns, 'c', 'fresh'), null)
  await waitFor(async () => (await client.cacheGet(ns, 'c', 'k')) === null, { what: 'the default TTL' })
  const lived = Date.now() - v2At
  assert.ok(lived >= 1800, `an entry under a 2000 ms default TTL expired ${lived} ms after its last put`)
  client.close()
})

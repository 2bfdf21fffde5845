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
  // Present right after the put (a TTL unit error, 1000 taken as 1 ms or as 1000 s, fails
  // here or at the expiry wait below); a 1 s TTL is a margin a loaded machine respects.
  await client.cachePut(ns, 'sessions', 'short', 'v', { ttlMs: 1000 })
  assert.equal(String(await client.cacheGet(ns, 'sessions', 'short')), 'v')
  await client.cachePut(ns, 'sessions', 'long', Buffer.from([0, 255]))
  await waitFor(async () => (await client.cacheGet(ns, 'sessions', 'short')) === null, {
    timeoutMs: 10000,
    what: 'the entry to expire',
  })
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
  client.close()
})

'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { startBroker, uniqueNs, take } = require('./helpers.js')

let broker
test.before(async () => {
  broker = await startBroker()
})
test.after(() => broker.stop())

test('events arrive in publish order with offsets and stream names', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  const sub = await client.subscribe(ns, 'orders')
  for (let i = 0; i < 50; i++) await client.publish(ns, 'orders', Buffer.from(`m${i}`))
  const events = await take(sub, 50)
  assert.deepEqual(
    events.map((e) => e.payload.toString()),
    Array.from({ length: 50 }, (_, i) => `m${i}`),
  )
  assert.deepEqual(
    events.map((e) => e.offset),
    Array.from({ length: 50 }, (_, i) => i),
  )
  assert.ok(events.every((e) => e.stream === 'orders' && Buffer.isBuffer(e.payload)))
  client.close()
})

test('one batch fans out to every subscriber on every client', async () => {
  const a = await broker.connect()
  const b = await broker.connect()
  const ns = uniqueNs()
  const subs = [await a.subscribe(ns, 's'), await a.subscribe(ns, 's'), await b.subscribe(ns, 's')]
  await a.publishBatch(ns, 's', [Buffer.from('x'), new Uint8Array([1, 2, 3]), 'z'], { ack: 'per_message' })
  for (const sub of subs) {
    const got = await take(sub, 3)
    assert.deepEqual(
      got.map((e) => [...e.payload]),
      [[120], [1, 2, 3], [122]],
    )
  }
  subs[0].close()
  await a.publish(ns, 's', 'after')
  assert.equal(await subs[0].next(), null)
  assert.deepEqual((await take(subs[1], 1)).map((e) => e.payload.toString()), ['after'])
  assert.deepEqual((await take(subs[2], 1)).map((e) => e.payload.toString()), ['after'])
  a.close()
  b.close()
})

test('for await closes the subscription on break; earliest replays history', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  await client.publishBatch(ns, 'h', ['0', '1', '2', '3'])
  const sub = await client.subscribe(ns, 'h', { from: 'earliest' })
  const seen = []
  for await (const ev of sub) {
    seen.push(ev.payload.toString())
    if (seen.length === 2) break
  }
  assert.deepEqual(seen, ['0', '1'])
  assert.equal(sub.closed, true)
  assert.equal(await sub.next(), null)
  const fromOffset = await client.subscribe(ns, 'h', { from: 2 })
  assert.deepEqual((await take(fromOffset, 2)).map((e) => e.offset), [2, 3])
  client.close()
})

test('wildcard subscriptions and the batching publisher', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  const sub = await client.subscribe(ns, 'orders.*')
  const pub = client.publisher(ns, 'orders.eu', { maxDelayMs: 1 })
  await Promise.all(Array.from({ length: 20 }, (_, i) => pub.publish(`e${i}`)))
  // Non-matching streams are published to before the last matching one: had one leaked, it
  // would arrive before orders.us (one subscription keeps publish order), not after the check.
  await client.publish(ns, 'other', 'no')
  await client.publish(ns, 'orders.eu.deep', 'no')
  await client.publish(ns, 'orders.us', 'u')
  const got = await take(sub, 21)
  assert.deepEqual(got.slice(0, 20).map((e) => [e.stream, e.payload.toString()]), Array.from({ length: 20 }, (_, i) => ['orders.eu', `e${i}`]))
  assert.deepEqual([got[20].stream, got[20].payload.toString()], ['orders.us', 'u'])
  assert.equal(sub.tryNext(), null)
  assert.deepEqual(sub.takeGaps(), [])
  client.close()
})

test('publish with ack none resolves once written; ping and createStream work', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  await client.createStream(ns, 'bounded', { maxRecords: 2, fullPolicy: 'drop_oldest' })
  await client.publishBatch(ns, 'bounded', ['a', 'b', 'c'], { ack: 'none' })
  const sub = await client.subscribe(ns, 'bounded', { from: 'earliest' })
  const got = await take(sub, 2)
  assert.deepEqual(got.map((e) => e.payload.toString()), ['b', 'c'])
  assert.equal(typeof (await client.ping()), 'number')
  client.close()
})

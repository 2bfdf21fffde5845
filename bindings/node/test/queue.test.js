'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { startBroker, uniqueNs } = require('./helpers.js')

let broker
test.before(async () => {
  broker = await startBroker()
})
test.after(() => broker.stop())

test('pull, ack, nack redelivers with the next attempt', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  await client.publishBatch(ns, 'jobs', ['a', 'b'])
  const c = client.consumer(ns, 'jobs', 'workers')
  const first = await c.pull(10, { waitMs: 2000 })
  assert.deepEqual(first.map((m) => [m.payload.toString(), m.attempt]), [['a', 1], ['b', 1]])
  assert.equal(await c.ack(first[0]), 1)
  assert.equal(await c.nack(first[1]), 1)
  const again = await c.pull(10, { waitMs: 5000 })
  assert.deepEqual(again.map((m) => [m.payload.toString(), m.attempt, m.offset]), [['b', 2, first[1].offset]])
  assert.equal(await c.extend(again, 10000), 1)
  assert.equal(await c.ack(again.map((m) => m.offset)), 1)
  assert.deepEqual(await c.pull(10), [])
  client.close()
})

test('max deliveries dead-letters a message; redrive and discard', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  await client.createGroup(ns, 'work', 'g', { maxDeliveries: 1 })
  await client.publishBatch(ns, 'work', ['poison', 'bad'])
  const c = client.consumer(ns, 'work', 'g')
  const got = await c.pull(10, { waitMs: 2000 })
  assert.equal(await c.nack(got), 2)
  const dead = await c.deadLetters()
  assert.deepEqual(dead.map((d) => [d.payload.toString(), d.attempts, d.reason]), [
    ['poison', 1, 'max_deliveries'],
    ['bad', 1, 'max_deliveries'],
  ])
  assert.equal(await c.redrive(dead[0]), 1)
  assert.equal(await c.discard(), 1)
  assert.deepEqual(await c.deadLetters(), [])
  const back = await c.pull(10, { waitMs: 5000 })
  assert.deepEqual(back.map((m) => [m.payload.toString(), m.attempt]), [['poison', 1]])
  await c.ack(back)
  client.close()
})

test('a consumer is an async iterable; break nacks what was pulled but not yielded', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  await client.publishBatch(ns, 'it', ['1', '2', '3', '4'])
  const c = client.consumer(ns, 'it', 'g')
  const seen = []
  for await (const m of c.messages({ max: 10, waitMs: 2000 })) {
    seen.push(m.payload.toString())
    await c.ack(m)
    if (seen.length === 2) break
  }
  assert.deepEqual(seen, ['1', '2'])
  // The two not yielded were nacked at break: another member gets them at once (a nack
  // counts as a delivery attempt).
  const other = client.consumer(ns, 'it', 'g')
  const rest = await other.pull(10, { waitMs: 5000 })
  assert.deepEqual(rest.map((m) => [m.payload.toString(), m.attempt]), [['3', 2], ['4', 2]])
  await other.ack(rest)
  client.close()
})

test('two members of a group share the work', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  await client.publishBatch(ns, 'share', ['a', 'b', 'c', 'd'])
  const a = client.consumer(ns, 'share', 'g')
  const b = client.consumer(ns, 'share', 'g')
  const ga = await a.pull(2, { waitMs: 2000 })
  const gb = await b.pull(10, { waitMs: 2000 })
  assert.deepEqual([...ga, ...gb].map((m) => m.payload.toString()).sort(), ['a', 'b', 'c', 'd'])
  assert.equal(ga.length, 2)
  client.close()
})

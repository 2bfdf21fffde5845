'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { Client, FelixError, ERROR_CODES } = require('..')
const { startBroker, uniqueNs, freePort } = require('./helpers.js')

let broker
test.before(async () => {
  broker = await startBroker()
})
test.after(() => broker.stop())

/** Asserts that `p` rejects with a FelixError of `code`. */
async function rejectsWith(p, code) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof FelixError, `not a FelixError: ${e}`)
    assert.equal(e.code, code, `${e.code}: ${e.message}`)
    assert.ok(ERROR_CODES.includes(e.code))
    assert.equal(typeof e.retryable, 'boolean')
    return true
  })
}

test('bad inputs fail with invalid_argument, from the broker or before sending', async () => {
  const client = await broker.connect()
  const ns = uniqueNs()
  await rejectsWith(client.publish('bad namespace!', 's', 'x'), 'invalid_argument')
  await rejectsWith(client.publish(ns, 'bad stream!', 'x'), 'invalid_argument')
  await rejectsWith(client.publishBatch(ns, 's', []), 'invalid_argument')
  await rejectsWith(client.publishBatch(ns, 's', ['x'], { ack: 'sometimes' }), 'invalid_argument')
  await rejectsWith(client.publish(ns, 's', 42), 'invalid_argument')
  await rejectsWith(client.cacheGet(ns, 'c', 42), 'invalid_argument')
  await rejectsWith(client.cachePut(ns, 'c', 'k', 'v', { ttlMs: 0 }), 'invalid_argument')
  await rejectsWith(client.cachePut(ns, 'c', 'k', 'v', { ttlMs: -1 }), 'invalid_argument')
  await rejectsWith(client.cachePut(ns, 'c', 'k', 'v', { ifAbsent: true, ifVersion: 1 }), 'invalid_argument')
  await rejectsWith(client.subscribe(ns, 's', { from: 'yesterday' }), 'invalid_argument')
  await rejectsWith(client.subscribe(ns, 's', { from: -1 }), 'invalid_argument')
  const c = client.consumer(ns, 's', 'g')
  await rejectsWith(c.pull(0), 'invalid_argument')
  await rejectsWith(c.ack([1.5]), 'invalid_argument')
  await rejectsWith(c.ack(), 'invalid_argument')
  await rejectsWith(client.createStream(ns, 's', { fullPolicy: 'explode' }), 'invalid_argument')
  assert.throws(() => client.consumer(ns, 's'), (e) => e instanceof FelixError && e.code === 'invalid_argument')
  assert.throws(() => new Client({}), (e) => e instanceof FelixError && e.code === 'invalid_argument')
  await rejectsWith(Client.connect({ addresses: [] }), 'invalid_argument')
  await rejectsWith(Client.connect({ connections: 'many' }), 'invalid_argument')
  await rejectsWith(Client.connect(broker.options({ tenant: 'bad tenant!' })), 'invalid_argument')
  client.close()
})

test('calls on a closed client fail with closed', async () => {
  const client = await broker.connect()
  client.close()
  assert.equal(client.closed, true)
  await rejectsWith(client.cacheGet('ns', 'c', 'k'), 'closed')
  await rejectsWith(client.publish('ns', 's', 'x'), 'closed')
  await rejectsWith(client.subscribe('ns', 's'), 'closed')
  await rejectsWith(client.consumer('ns', 's', 'g').pull(1), 'closed')
})

test('no broker: unavailable, retryable', async () => {
  const port = await freePort()
  await assert.rejects(
    Client.connect({ addresses: [`127.0.0.1:${port}`], caFile: broker.ca, connectTimeoutMs: 300 }),
    (e) => e instanceof FelixError && ['unavailable', 'timeout'].includes(e.code) && e.retryable === true,
  )
})

test('a broker with tokens rejects others with unauthorized', async () => {
  const secured = await startBroker({ tokens: 'default:secret,default:other,acme:acme-token' })
  try {
    await rejectsWith(Client.connect(secured.options({ token: 'wrong' })), 'unauthorized')
    // A valid token of another tenant opens nothing here.
    await rejectsWith(Client.connect(secured.options({ token: 'acme-token' })), 'unauthorized')
    const ok = await Client.connect(secured.options({ token: 'secret' }))
    await ok.cachePut('ns', 'c', 'k', 'v')
    ok.close()
  } finally {
    await secured.stop()
  }
})

test('a payload over the frame limit fails with frame_too_large', async () => {
  const small = await startBroker({ args: ['--max-frame-bytes', '65536'] })
  try {
    const client = await small.connect()
    await rejectsWith(client.publish('ns', 's', Buffer.alloc(100 * 1024)), 'frame_too_large')
    await client.publish('ns', 's', Buffer.alloc(1024))
    client.close()
  } finally {
    await small.stop()
  }
})

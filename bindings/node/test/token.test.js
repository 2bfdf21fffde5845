'use strict'
// `token` as a function (sync or async): called on the JavaScript thread before connecting
// and used (the dev broker accepts any token, so what is checked is that it ran and calls
// succeed); one that throws or rejects fails with `unauthorized` carrying its message; one
// that never settles is bounded by tokenTimeoutMs.
const test = require('node:test')
const assert = require('node:assert/strict')
const { FelixError } = require('..')
const { startBroker, uniqueNs } = require('./helpers.js')

let broker
test.before(async () => {
  broker = await startBroker()
})
test.after(() => broker.stop())

async function rejectsWith(p, code, pattern) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof FelixError, `not a FelixError: ${e}`)
    assert.equal(e.code, code, `${e.code}: ${e.message}`)
    if (pattern) assert.match(e.message, pattern)
    return true
  })
}

test('a token function (sync and async) is called and the client works', async () => {
  for (const make of [() => 'token-from-node', async () => 'token-from-node']) {
    let calls = 0
    const client = await broker.connect({
      token: () => {
        calls++
        return make()
      },
    })
    try {
      assert.equal(calls, 1)
      const ns = uniqueNs()
      await client.cachePut(ns, 'c', 'k', 'v')
      assert.equal(String(await client.cacheGet(ns, 'c', 'k')), 'v')
    } finally {
      client.close()
    }
  }
})

test('a failing token function is unauthorized with its message', async () => {
  await rejectsWith(
    broker.connect({
      token: () => {
        throw new Error('vault is sealed')
      },
    }),
    'unauthorized',
    /vault is sealed/,
  )
  await rejectsWith(broker.connect({ token: async () => Promise.reject(new Error('idp down')) }), 'unauthorized', /idp down/)
  await rejectsWith(broker.connect({ token: () => 42 }), 'unauthorized', /not a string/)
})

test('a token function that never settles is bounded by tokenTimeoutMs', async () => {
  await rejectsWith(
    broker.connect({ token: () => new Promise(() => {}), tokenTimeoutMs: 200 }),
    'unauthorized',
    /did not settle/,
  )
})

test('tokenExchangeCaFile needs tokenExchangeUrl, and a missing CA file fails the exchange', async () => {
  await rejectsWith(broker.connect({ tokenExchangeCaFile: '/nonexistent/cp-ca.pem' }), 'invalid_argument', /tokenExchangeCaFile needs tokenExchangeUrl/)
  await rejectsWith(
    broker.connect({ tokenExchangeUrl: 'https://localhost:1', subjectToken: 'oidc', tokenExchangeCaFile: '/nonexistent/cp-ca.pem' }),
    'invalid_argument',
    /\/nonexistent\/cp-ca\.pem/,
  )
})

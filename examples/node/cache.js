'use strict'
// Cache: put with a TTL, compare-and-set with versions, handle a conflict by its code.
const { Client, FelixError } = require('felix-client')
const { connectOptions, namespace, expectEqual, run } = require('./connect.js')

async function main() {
  const client = await Client.connect(connectOptions())
  try {
    const key = `cart-${Date.now()}`
    const v1 = await client.cachePut(namespace, 'sessions', key, JSON.stringify({ items: 1 }), { ttlMs: 60000 })
    const entry = await client.cacheGetEntry(namespace, 'sessions', key)
    expectEqual(entry && [entry.value.toString(), entry.version], [JSON.stringify({ items: 1 }), v1], 'entry read back (value, version)')
    console.log(`read ${entry.value} (version ${entry.version})`)
    await client.cachePut(namespace, 'sessions', key, JSON.stringify({ items: 2 }), { ifVersion: v1 })
    let conflict = false
    try {
      await client.cachePut(namespace, 'sessions', key, JSON.stringify({ items: 9 }), { ifVersion: v1 })
    } catch (e) {
      if (!(e instanceof FelixError) || e.code !== 'conflict') throw e
      conflict = true
      console.log('stale write rejected: conflict')
    }
    expectEqual(conflict, true, 'a write with a stale version rejected')
    const now = await client.cacheGet(namespace, 'sessions', key)
    console.log(`now ${now}`)
    expectEqual(now && now.toString(), JSON.stringify({ items: 2 }), 'value after compare-and-set')
    const deleted = await client.cacheDelete(namespace, 'sessions', key)
    console.log(`deleted: ${deleted}`)
    expectEqual(deleted, true, 'delete of a live key')
  } finally {
    client.close()
  }
}

run(main)

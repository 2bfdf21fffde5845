'use strict'
// Cache: put with a TTL, compare-and-set with versions, handle a conflict by its code.
const { Client, FelixError } = require('felix-client')
const { connectOptions, namespace } = require('./connect.js')

async function main() {
  const client = await Client.connect(connectOptions())
  try {
    const key = `cart-${Date.now()}`
    const v1 = await client.cachePut(namespace, 'sessions', key, JSON.stringify({ items: 1 }), { ttlMs: 60000 })
    const entry = await client.cacheGetEntry(namespace, 'sessions', key)
    console.log(`read ${entry.value} (version ${entry.version})`)
    await client.cachePut(namespace, 'sessions', key, JSON.stringify({ items: 2 }), { ifVersion: v1 })
    try {
      await client.cachePut(namespace, 'sessions', key, JSON.stringify({ items: 9 }), { ifVersion: v1 })
    } catch (e) {
      if (!(e instanceof FelixError) || e.code !== 'conflict') throw e
      console.log('stale write rejected: conflict')
    }
    console.log(`now ${await client.cacheGet(namespace, 'sessions', key)}`)
    console.log(`deleted: ${await client.cacheDelete(namespace, 'sessions', key)}`)
  } finally {
    client.close()
  }
}

main().catch((e) => {
  console.error(`error ${e.code}: ${e.message}`)
  process.exit(1)
})

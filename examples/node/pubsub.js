'use strict'
// Pub/sub: subscribe, publish a batch, read it back with for await (break ends the
// subscription).
const { Client } = require('felix-client')
const { connectOptions, namespace, expectEqual, run } = require('./connect.js')

async function main() {
  const client = await Client.connect(connectOptions())
  try {
    const stream = `orders-${Date.now()}`
    const sub = await client.subscribe(namespace, stream)
    const orders = ['order-1', 'order-2', 'order-3']
    await client.publishBatch(namespace, stream, orders)
    const got = []
    // Never wait forever: a lost event ends the loop with a `cancelled` error.
    for await (const event of sub.events({ signal: AbortSignal.timeout(10000) })) {
      console.log(`${event.stream}@${event.offset}: ${event.payload.toString()}`)
      got.push([event.offset, event.payload.toString()])
      if (got.length === orders.length) break
    }
    expectEqual(got, orders.map((o, i) => [i, o]), 'events (offset, payload)')
  } finally {
    client.close()
  }
}

run(main)

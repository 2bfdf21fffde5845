'use strict'
// Pub/sub: subscribe, publish a batch, read it back with for await (break ends the
// subscription).
const { Client } = require('felix-client')
const { connectOptions, namespace } = require('./connect.js')

async function main() {
  const client = await Client.connect(connectOptions())
  try {
    const sub = await client.subscribe(namespace, 'orders')
    await client.publishBatch(namespace, 'orders', ['order-1', 'order-2', 'order-3'])
    let n = 0
    for await (const event of sub) {
      console.log(`${event.stream}@${event.offset}: ${event.payload.toString()}`)
      if (++n === 3) break
    }
  } finally {
    client.close()
  }
}

main().catch((e) => {
  console.error(`error ${e.code}: ${e.message}`)
  process.exit(1)
})

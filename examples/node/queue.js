'use strict'
// Work queue: publish jobs, consume them in a group; a failing job is nacked and retried,
// and after max deliveries it lands in the dead letters.
const { Client } = require('felix-client')
const { connectOptions, namespace } = require('./connect.js')

async function main() {
  const client = await Client.connect(connectOptions())
  const stream = `jobs-${Date.now()}`
  try {
    await client.createGroup(namespace, stream, 'workers', { maxDeliveries: 2, ackTimeoutMs: 30000 })
    await client.publishBatch(namespace, stream, ['resize:1', 'resize:2', 'poison'])
    const consumer = client.consumer(namespace, stream, 'workers')
    let handled = 0
    for await (const msg of consumer.messages({ max: 10, waitMs: 2000 })) {
      const job = msg.payload.toString()
      if (job === 'poison') {
        console.log(`failed ${job} (attempt ${msg.attempt}), nack`)
        await consumer.nack(msg)
      } else {
        console.log(`done ${job}`)
        await consumer.ack(msg)
      }
      if (++handled === 4) break
    }
    const dead = await consumer.deadLetters()
    console.log('dead letters:', dead.map((d) => `${d.payload} (${d.reason})`).join(', '))
    await consumer.discard()
  } finally {
    client.close()
  }
}

main().catch((e) => {
  console.error(`error ${e.code}: ${e.message}`)
  process.exit(1)
})

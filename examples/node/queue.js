'use strict'
// Work queue: publish jobs, consume them in a group; a failing job is nacked and retried,
// and after max deliveries it lands in the dead letters.
const { Client } = require('felix-client')
const { connectOptions, namespace, expectEqual, run } = require('./connect.js')

async function main() {
  const client = await Client.connect(connectOptions())
  const stream = `jobs-${Date.now()}`
  try {
    await client.createGroup(namespace, stream, 'workers', { maxDeliveries: 2, ackTimeoutMs: 30000 })
    await client.publishBatch(namespace, stream, ['resize:1', 'resize:2', 'poison'])
    const consumer = client.consumer(namespace, stream, 'workers')
    const done = []
    const failed = []
    // Two jobs done, the poison one tried twice; the signal ends the loop if one never comes.
    for await (const msg of consumer.messages({ max: 10, waitMs: 2000, signal: AbortSignal.timeout(20000) })) {
      const job = msg.payload.toString()
      if (job === 'poison') {
        console.log(`failed ${job} (attempt ${msg.attempt}), nack`)
        failed.push(msg.attempt)
        await consumer.nack(msg)
      } else {
        console.log(`done ${job}`)
        done.push(job)
        await consumer.ack(msg)
      }
      if (done.length + failed.length === 4) break
    }
    const dead = await consumer.deadLetters()
    console.log('dead letters:', dead.map((d) => `${d.payload} (${d.reason})`).join(', '))
    expectEqual(done.sort(), ['resize:1', 'resize:2'], 'jobs done')
    expectEqual(failed, [1, 2], 'attempts of the poison job')
    expectEqual(dead.map((d) => [d.payload.toString(), d.reason, d.attempts]), [['poison', 'max_deliveries', 2]], 'dead letters')
    expectEqual(await consumer.discard(), 1, 'dead letters discarded')
  } finally {
    client.close()
  }
}

run(main)

'use strict'
// Runs every examples/node/*.js program (except the shared connect.js) against a real broker,
// resolving `felix-client` to this package. Each example checks its own results and exits 1
// with a message when they are wrong; this test also checks what it printed, and that an
// example without a broker fails instead of exiting 0.
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { repo, startBroker, freePort, uniqueNs } = require('./helpers.js')

const dir = path.join(repo, 'examples', 'node')
const examples = fs.readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'connect.js').sort()

/** Lines each example must print, in this order (other lines may come between). */
const OUTPUT = {
  'cache.js': [/^read \{"items":1\} \(version \d+\)$/, /^stale write rejected: conflict$/, /^now \{"items":2\}$/, /^deleted: true$/],
  'pubsub.js': [/^orders-\d+@0: order-1$/, /^orders-\d+@1: order-2$/, /^orders-\d+@2: order-3$/],
  'queue.js': [/^failed poison \(attempt 1\), nack$/, /^failed poison \(attempt 2\), nack$/, /^dead letters: poison \(max_deliveries\)$/],
}

let broker
let nodePath
test.before(async () => {
  broker = await startBroker()
  nodePath = fs.mkdtempSync(path.join(os.tmpdir(), 'felix-node-path-'))
  fs.symlinkSync(path.resolve(__dirname, '..'), path.join(nodePath, 'felix-client'), 'dir')
})
test.after(() => broker.stop())

function runExample(file, env) {
  return spawnSync(process.execPath, [path.join(dir, file)], {
    env: { ...process.env, NODE_PATH: nodePath, FELIX_NAMESPACE: uniqueNs('ex'), ...env },
    encoding: 'utf8',
    timeout: 60000,
  })
}

test('every example has its expected output listed', () => {
  assert.ok(examples.length >= 3, examples.join(','))
  assert.deepEqual(examples, Object.keys(OUTPUT).sort())
})

for (const file of examples) {
  test(`examples/node/${file} runs and prints what it should`, () => {
    const r = runExample(file, { FELIX_ADDR: broker.addr, FELIX_CA: broker.ca })
    assert.equal(r.status, 0, `${file} failed:\n${r.stdout}\n${r.stderr}`)
    const lines = r.stdout.split('\n')
    let from = 0
    for (const want of OUTPUT[file] || []) {
      const i = lines.findIndex((l, j) => j >= from && want.test(l))
      assert.ok(i >= 0, `${file} did not print ${want} (in order); it printed:\n${r.stdout}`)
      from = i + 1
    }
  })
}

test('an example without a broker exits non-zero and says why', async () => {
  const port = await freePort()
  const r = runExample('cache.js', { FELIX_ADDR: `127.0.0.1:${port}`, FELIX_CA: broker.ca })
  assert.equal(r.status, 1, `exit ${r.status}, signal ${r.signal}:\n${r.stdout}\n${r.stderr}`)
  assert.match(r.stderr, /^error (unavailable|timeout): /m)
})

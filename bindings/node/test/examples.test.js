'use strict'
// Runs every examples/node/*.js program (except the shared connect.js) against a real broker,
// resolving `felix-client` to this package.
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { repo, startBroker } = require('./helpers.js')

const dir = path.join(repo, 'examples', 'node')
const examples = fs.readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'connect.js').sort()

let broker
let nodePath
test.before(async () => {
  broker = await startBroker()
  nodePath = fs.mkdtempSync(path.join(os.tmpdir(), 'felix-node-path-'))
  fs.symlinkSync(path.resolve(__dirname, '..'), path.join(nodePath, 'felix-client'), 'dir')
})
test.after(() => broker.stop())

test('there are examples', () => assert.ok(examples.length >= 3, examples.join(',')))

for (const file of examples) {
  test(`examples/node/${file} runs`, () => {
    const r = spawnSync(process.execPath, [path.join(dir, file)], {
      env: { ...process.env, NODE_PATH: nodePath, FELIX_ADDR: broker.addr, FELIX_CA: broker.ca },
      encoding: 'utf8',
      timeout: 30000,
    })
    assert.equal(r.status, 0, `${file} failed:\n${r.stdout}\n${r.stderr}`)
    assert.ok(r.stdout.trim().length > 0)
  })
}

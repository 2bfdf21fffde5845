'use strict'
// The shared cross-language scenarios (tests/scenarios) through this package, and a
// self-test: deliberately wrong scenarios must fail at the right step.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { repo, startBroker } = require('./helpers.js')
const { runScenario } = require('./scenarios.js')

const dir = path.join(repo, 'tests', 'scenarios')
let files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'schema.json').sort() : []
if (process.env.FELIX_SCENARIOS) {
  const wanted = process.env.FELIX_SCENARIOS.split(',')
  for (const w of wanted) if (!files.includes(`${w}.json`)) throw new Error(`no scenario named ${w}`)
  files = files.filter((f) => wanted.includes(path.basename(f, '.json')))
}

let broker
test.before(async () => {
  broker = await startBroker()
})
test.after(() => broker.stop())

test('scenarios exist', { skip: !fs.existsSync(dir) && 'no tests/scenarios' }, () => {
  assert.ok(files.length > 0, 'a runner that finds no scenario must fail')
})

files.forEach((file, index) => {
  test(`scenario ${path.basename(file, '.json')}`, async () => {
    const failure = await runScenario(path.join(dir, file), { addr: broker.addr, ca: broker.ca, index })
    if (failure) assert.fail(`step ${failure.index} (${failure.op}): ${failure.reason}`)
  })
})

test('the runner fails wrong scenarios at the right step', { skip: !fs.existsSync(dir) && 'no tests/scenarios' }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'felix-node-scenarios-'))
  fs.copyFileSync(path.join(dir, 'schema.json'), path.join(tmp, 'schema.json'))
  const cases = [
    // [name, steps, failing step index]
    ['wrong_payload', [{ op: 'connect' }, { op: 'subscribe', as: 's', stream: 'x' }, { op: 'publish', stream: 'x', payload: 'a' }, { op: 'expect_events', subscription: 's', payloads: ['b'] }], 3],
    ['unknown_key', [{ op: 'connect' }, { op: 'cache_get', cache: 'c', key: 'k', expect: null, typo: 1 }], 1],
    ['missing_key', [{ op: 'connect' }, { op: 'subscribe', stream: 'x' }], 1],
    ['unknown_op', [{ op: 'connect' }, { op: 'teleport' }], 1],
    ['wrong_error_code', [{ op: 'connect' }, { op: 'publish', stream: 'x', payloads: [], expect_error: { code: 'conflict' } }], 1],
    ['error_expected_but_ok', [{ op: 'connect' }, { op: 'cache_put', cache: 'c', key: 'k', value: 'v', expect_error: { code: 'conflict' } }], 1],
    ['unknown_alias', [{ op: 'connect' }, { op: 'queue_ack', stream: 'x', group: 'g', offsets: 'nothing' }], 1],
    ['wrong_count', [{ op: 'connect' }, { op: 'publish', stream: 'q', payload: 'a' }, { op: 'queue_pull', stream: 'q', group: 'g', expect: [] }], 2],
    ['wrong_version', [{ op: 'connect' }, { op: 'cache_put', cache: 'c', key: 'k', value: 'v', as: 'v1' }, { op: 'cache_put', cache: 'c', key: 'k', value: 'w', expect_version: { lt: 'v1' } }], 2],
    ['unexpected_event', [{ op: 'connect' }, { op: 'subscribe', as: 's', stream: 'x' }, { op: 'publish', stream: 'x', payload: 'a' }, { op: 'expect_no_event', subscription: 's', within_ms: 200 }], 3],
    ['still_a_hit', [{ op: 'connect' }, { op: 'cache_put', cache: 'c', key: 'k', value: 'v' }, { op: 'wait_until_cache_miss', cache: 'c', key: 'k', timeout_ms: 200 }], 2],
  ]
  for (const [name, steps, at] of cases) {
    const file = path.join(tmp, `${name}.json`)
    fs.writeFileSync(file, JSON.stringify({ name, description: 'must fail', steps }))
    const failure = await runScenario(file, { addr: broker.addr, ca: broker.ca, index: 999 })
    assert.ok(failure, `${name} passed but must fail`)
    assert.equal(failure.index, at, `${name} failed at step ${failure.index} (${failure.reason}), expected ${at}`)
  }
})

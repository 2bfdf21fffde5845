'use strict'
// The shared cross-language scenarios (tests/scenarios) through this package, and the
// runner's self-check: the deliberately wrong scenarios of wrong-scenarios/ must each fail at
// the right step with the right reason, so a green run is never a vacuous one.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { repo, startBroker } = require('./helpers.js')
const { runScenario, runDoc, loadSchema, OPS } = require('./scenarios.js')

const dir = path.join(repo, 'tests', 'scenarios')
const wrongDir = path.join(__dirname, 'wrong-scenarios')

/** The scenario files to run; a missing folder is an empty list (and a failed test below). */
function scenarioFiles() {
  if (!fs.existsSync(dir)) return []
  let files = fs.readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'schema.json').sort()
  if (process.env.FELIX_SCENARIOS) {
    const wanted = process.env.FELIX_SCENARIOS.split(',').map((w) => w.trim()).filter(Boolean)
    for (const w of wanted) if (!files.includes(`${w}.json`)) throw new Error(`FELIX_SCENARIOS names ${w}, which is not in ${dir}`)
    files = files.filter((f) => wanted.includes(path.basename(f, '.json')))
  }
  return files
}
const files = scenarioFiles()

let broker
let jwtBroker
test.before(async () => {
  broker = await startBroker()
})
test.after(async () => {
  await broker.stop()
  if (jwtBroker) await (await jwtBroker).stop()
})

// The JWT-mode broker of `"broker": "jwt"` scenarios (tests/scenarios/README.md, "Brokers"),
// started on first use with the auth fixture's key.
const authDir = path.join(dir, 'auth')
async function jwt() {
  jwtBroker ??= startBroker({ args: ['--jwt-keys-file', path.join(authDir, 'jwks.json'), '--auth-issuer', 'felix-scenarios',
    // The fixture tokens live until 2100 (tests/scenarios/auth/principals.json).
    '--auth-max-token-lifetime-s', '4000000000'] })
  const b = await jwtBroker
  return { addr: b.addr, ca: b.ca }
}

// Never skipped: a runner that finds nothing to run must fail, not pass.
test('scenarios exist', () => {
  assert.ok(fs.existsSync(dir), `no scenario folder at ${dir}`)
  assert.ok(files.length > 0, `no scenario in ${dir}`)
})

files.forEach((file, index) => {
  test(`scenario ${path.basename(file, '.json')}`, async () => {
    const failure = await runScenario(path.join(dir, file), { addr: broker.addr, ca: broker.ca, index, jwt })
    if (failure) assert.fail(`step ${failure.index} (${failure.op}): ${failure.reason}`)
  })
})

test('the runner executes exactly the ops schema.json lists', () => {
  assert.deepEqual([...loadSchema(dir).ops].sort(), [...OPS].sort())
})

/** Every case of wrong-scenarios/*.json, with the scenario document it runs. */
function wrongCases() {
  const out = []
  for (const f of fs.readdirSync(wrongDir).filter((f) => f.endsWith('.json')).sort()) {
    const data = JSON.parse(fs.readFileSync(path.join(wrongDir, f), 'utf8'))
    assert.ok(Array.isArray(data.cases) && data.cases.length > 0, `${f}: no cases`)
    for (const c of data.cases) {
      assert.ok(typeof c.name === 'string' && typeof c.why === 'string' && 'fails_at' in c, `${f}: malformed case ${JSON.stringify(c).slice(0, 80)}`)
      assert.ok(('steps' in c) !== ('scenario' in c), `${f}/${c.name}: give steps or scenario`)
      const doc = c.scenario ?? { name: c.name, description: c.why, steps: c.steps }
      out.push({ file: f, name: c.name, stem: c.file_name ?? c.name, doc, failsAt: c.fails_at })
    }
  }
  return out
}

test('the runner fails each wrong scenario at the right step, for the right reason', async () => {
  const cases = wrongCases()
  assert.ok(cases.length >= 40, `only ${cases.length} cases`)
  assert.equal(new Set(cases.map((c) => c.name)).size, cases.length, 'case names are unique')
  const wrong = []
  for (const [i, c] of cases.entries()) {
    const failure = await runDoc(c.doc, c.stem, { addr: broker.addr, ca: broker.ca, index: 1000 + i, dir })
    const label = `${c.file}/${c.name}`
    if (c.failsAt === null) {
      if (failure) wrong.push(`${label} must pass, failed at step ${failure.index} (${failure.op}): ${failure.reason}`)
      continue
    }
    const step = c.failsAt.step === null ? -1 : c.failsAt.step
    if (!failure) wrong.push(`${label} passed; must fail at step ${c.failsAt.step}: ${c.failsAt.reason}`)
    else if (failure.index !== step || !failure.reason.includes(c.failsAt.reason)) {
      wrong.push(`${label} must fail at step ${c.failsAt.step} with "${c.failsAt.reason}", failed at step ${failure.index} (${failure.op}): ${failure.reason}`)
    }
  }
  assert.deepEqual(wrong, [], `the runner misjudged ${wrong.length} of ${cases.length} cases:\n  ${wrong.join('\n  ')}`)
})

// The shared self-check every language's runner runs (the Rust
// runner_fails_every_shared_wrong_scenario): each scenario of tests/scenarios/wrong/ must fail
// at the step, and with a reason containing the text, that wrong/failures.json gives (step
// null: before any step). A file in failures.json's exceptions.node is one this runner cannot
// see as wrong (with the reason): it must then pass, so the list never keeps a stale entry.
test('the runner fails every shared wrong scenario of tests/scenarios/wrong as failures.json says', async () => {
  const sharedDir = path.join(dir, 'wrong')
  const { failures, exceptions = {} } = JSON.parse(fs.readFileSync(path.join(sharedDir, 'failures.json'), 'utf8'))
  const files = fs.readdirSync(sharedDir).filter((f) => f.endsWith('.json') && f !== 'failures.json').sort()
  const stems = files.map((f) => path.basename(f, '.json'))
  assert.deepEqual(stems, Object.keys(failures).sort(), 'wrong/*.json and failures.json differ')
  assert.ok(files.length >= 40, `only ${files.length} wrong scenarios`)
  const excused = exceptions.node ?? {}
  for (const [stem, why] of Object.entries(excused)) {
    assert.ok(stem in failures && typeof why === 'string' && why, `exceptions.node.${stem}: no such wrong scenario, or no reason`)
  }
  const wrong = []
  for (const [i, stem] of stems.entries()) {
    const want = failures[stem]
    const doc = JSON.parse(fs.readFileSync(path.join(sharedDir, `${stem}.json`), 'utf8'))
    // dir: the folder of schema.json, which wrong/ shares with the scenarios.
    const failure = await runDoc(doc, stem, { addr: broker.addr, ca: broker.ca, index: 4000 + i, dir, jwt })
    const got = failure && `step ${failure.index} (${failure.op}): ${failure.reason}`
    if (stem in excused) {
      if (failure) wrong.push(`${stem} is in exceptions.node (${excused[stem]}) but failed: ${got}; remove the exception`)
      continue
    }
    const step = want.step === null ? -1 : want.step
    if (!failure) wrong.push(`${stem} passed; must fail at step ${want.step}: ${want.reason}`)
    else if ((want.step !== null && failure.index !== step) || !failure.reason.includes(want.reason)) {
      wrong.push(`${stem} must fail at step ${want.step} with "${want.reason}", ${got}`)
    }
  }
  assert.deepEqual(wrong, [], `the runner misjudged ${wrong.length} of ${files.length} shared wrong scenarios:\n  ${wrong.join('\n  ')}`)
})

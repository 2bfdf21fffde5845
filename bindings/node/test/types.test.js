'use strict'
// The checked-in declarations match what the modules export: the generated ../index.d.ts
// against the native addon, the hand-written ../lib/index.d.ts against the package, and the
// error codes against the Rust ErrorCode (wire/src/error.rs).
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { repo } = require('./helpers.js')

const root = path.resolve(__dirname, '..')

/** Classes (with their methods, getters and statics) and other exported names of a .d.ts. */
function declarations(file) {
  const text = fs.readFileSync(file, 'utf8')
  const classes = {}
  const values = new Set()
  const lines = text.split('\n')
  let current = null
  for (const line of lines) {
    let m
    if ((m = line.match(/^export declare class (\w+)/))) {
      current = classes[m[1]] = new Set()
      continue
    }
    if (current && line.startsWith('}')) {
      current = null
      continue
    }
    if (current) {
      if ((m = line.match(/^  (?:static )?(?:readonly )?(\w+)[(?:<]/)) && m[1] !== 'constructor' && !line.includes('private constructor')) {
        current.add((line.includes(' static ') || line.trimStart().startsWith('static ') ? 'static ' : '') + m[1])
      }
      continue
    }
    if ((m = line.match(/^export declare (?:function|const) (\w+)/))) values.add(m[1])
  }
  return { classes, values }
}

/** The same shape, read from a module at run time. */
function runtimeShape(mod, classNames) {
  const classes = {}
  for (const name of classNames) {
    const C = mod[name]
    assert.equal(typeof C, 'function', `${name} is not exported`)
    const members = new Set()
    for (const k of Object.getOwnPropertyNames(C.prototype)) if (k !== 'constructor') members.add(k)
    for (const k of Object.getOwnPropertyNames(C)) {
      if (!['length', 'name', 'prototype', 'arguments', 'caller'].includes(k)) members.add(`static ${k}`)
    }
    classes[name] = members
  }
  return classes
}

const sorted = (s) => [...s].sort()

test('index.d.ts (generated) matches the native addon', () => {
  const native = require('../index.js')
  const d = declarations(path.join(root, 'index.d.ts'))
  const declaredClasses = Object.keys(d.classes).sort()
  const exportedClasses = Object.keys(native).filter((k) => typeof native[k] === 'function' && /^[A-Z]/.test(k)).sort()
  assert.deepEqual(exportedClasses, declaredClasses)
  const shape = runtimeShape(native, declaredClasses)
  for (const c of declaredClasses) assert.deepEqual(sorted(shape[c]), sorted(d.classes[c]), `class ${c}`)
  const exportedValues = Object.keys(native).filter((k) => !/^[A-Z]/.test(k)).sort()
  assert.deepEqual(exportedValues, sorted(d.values))
})

test('lib/index.d.ts (hand-written) matches the package', () => {
  const pkg = require('..')
  const d = declarations(path.join(root, 'lib', 'index.d.ts'))
  const declaredClasses = Object.keys(d.classes).sort()
  assert.deepEqual(Object.keys(pkg).filter((k) => /^[A-Z][a-z]/.test(k)).sort(), declaredClasses)
  const shape = runtimeShape(pkg, declaredClasses)
  // Instance fields set in constructors (namespace, stream, group; FelixError's) are data,
  // not prototype members: compare methods and getters only.
  const fields = new Set(['namespace', 'stream', 'group', 'name', 'code', 'retryable', 'cause'])
  for (const c of declaredClasses) {
    const declared = sorted([...d.classes[c]].filter((m) => !fields.has(m)))
    assert.deepEqual(sorted(shape[c]), declared, `class ${c}`)
  }
  assert.deepEqual(Object.keys(pkg).filter((k) => /^[A-Z_]+$/.test(k)).sort(), sorted(d.values))
})

test('ERROR_CODES are the Rust ErrorCode strings', () => {
  const { ERROR_CODES } = require('..')
  const rust = fs.readFileSync(path.join(repo, 'wire', 'src', 'error.rs'), 'utf8')
  const codes = [...rust.matchAll(/ErrorCode::\w+ => "([a-z_]+)"/g)].map((m) => m[1])
  assert.ok(codes.length >= 18)
  assert.deepEqual([...new Set(codes)].sort(), [...ERROR_CODES].sort())
  const declared = fs.readFileSync(path.join(root, 'lib', 'index.d.ts'), 'utf8')
  for (const c of codes) assert.ok(declared.includes(`'${c}'`), `${c} missing from the ErrorCode type`)
})

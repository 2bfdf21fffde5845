'use strict'
// A small JSON Schema (draft 2020-12) checker for tests/scenarios/schema.json, so the Node
// scenario runner holds every value, at every depth, to the schema: a typo in a nested entry
// (`ofset` in an expected event, `atempt` in an expected message, `reson` in a dead letter,
// `b46` in a payload) fails the scenario instead of silently not being checked.
//
// It implements exactly the keywords the schema uses and refuses any other, so a schema that
// grows a new keyword fails loudly here instead of being half-checked.

const ANNOTATIONS = new Set(['$schema', '$id', 'title', 'description', '$comment', '$defs', 'default', 'examples'])
const KEYWORDS = new Set([
  '$ref', 'type', 'enum', 'const', 'properties', 'required', 'additionalProperties', 'minProperties',
  'items', 'minItems', 'pattern', 'minLength', 'minimum', 'maximum', 'oneOf', 'anyOf', 'allOf', 'not',
  'if', 'then', 'else',
])

function typeOf(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number'
  return typeof v
}

function hasType(v, t) {
  const got = typeOf(v)
  return got === t || (t === 'number' && got === 'integer')
}

function deepEqual(a, b) {
  if (a === b) return true
  if (typeOf(a) !== typeOf(b) || typeof a !== 'object' || a === null) return false
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]))
  const ka = Object.keys(a)
  return ka.length === Object.keys(b).length && ka.every((k) => k in b && deepEqual(a[k], b[k]))
}

const at = (path, k) => (typeof k === 'number' ? `${path}[${k}]` : path ? `${path}.${k}` : k)
const where = (path) => path || 'the scenario'

/** Why `s` rejects (for `not`): the keys it names, when it is only about required keys. */
function forbidden(s) {
  if (s.required && Object.keys(s).length === 1) return `cannot have ${s.required.join(' together with ')}`
  if (s.anyOf && s.anyOf.every((b) => b.required && Object.keys(b).length === 1)) {
    return `cannot have any of ${s.anyOf.flatMap((b) => b.required).join(', ')}`
  }
  return 'has a form that is not allowed'
}

class SchemaChecker {
  constructor(root) {
    this.root = root
    // Refuse keywords this checker does not implement, anywhere in the schema.
    const walk = (s, where) => {
      if (typeof s !== 'object' || s === null) return
      for (const [k, v] of Object.entries(s)) {
        if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k)) throw new Error(`schema.json uses ${k} at ${where}, which the Node runner's checker does not implement`)
        if (k === 'properties' || k === '$defs') for (const [n, d] of Object.entries(v)) walk(d, `${where}/${k}/${n}`)
        else if (['oneOf', 'anyOf', 'allOf'].includes(k)) v.forEach((d, i) => walk(d, `${where}/${k}/${i}`))
        else if (['items', 'not', 'if', 'then', 'else', 'additionalProperties'].includes(k)) walk(v, `${where}/${k}`)
      }
    }
    walk(root, '#')
  }

  resolve(ref) {
    if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`)
    let s = this.root
    for (const part of ref.slice(2).split('/')) {
      s = s[part]
      if (s === undefined) throw new Error(`dangling $ref ${ref}`)
    }
    return s
  }

  /** Every reason `v` (at `path`) breaks `s`; empty when it is valid. */
  errors(v, s, path) {
    if (s === true) return []
    if (s === false) return [`${where(path)} is not allowed`]
    const out = []
    if (s.$ref) out.push(...this.named(s.$ref, this.errors(v, this.resolve(s.$ref), path), path))
    if (s.type !== undefined) {
      const types = Array.isArray(s.type) ? s.type : [s.type]
      if (!types.some((t) => hasType(v, t))) return [...out, `${where(path)} must be ${types.join(' or ')}, got ${JSON.stringify(v)}`]
    }
    if (s.const !== undefined && !deepEqual(v, s.const)) out.push(`${where(path)} must be ${JSON.stringify(s.const)}, got ${JSON.stringify(v)}`)
    if (s.enum && !s.enum.some((e) => deepEqual(v, e))) out.push(`${where(path)} must be one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(v)}`)
    if (typeOf(v) === 'object') {
      const props = s.properties || {}
      for (const k of s.required || []) if (!(k in v)) out.push(`${where(path)} needs ${k}`)
      for (const [k, x] of Object.entries(v)) {
        if (k in props) out.push(...this.errors(x, props[k], at(path, k)))
        else if (s.additionalProperties === false) out.push(`${where(path)} does not take key ${JSON.stringify(k)}`)
        else if (typeof s.additionalProperties === 'object') out.push(...this.errors(x, s.additionalProperties, at(path, k)))
      }
      if (s.minProperties !== undefined && Object.keys(v).length < s.minProperties) out.push(`${where(path)} needs at least ${s.minProperties} keys`)
    }
    if (Array.isArray(v)) {
      if (s.minItems !== undefined && v.length < s.minItems) out.push(`${where(path)} needs at least ${s.minItems} items`)
      if (s.items) v.forEach((x, i) => out.push(...this.errors(x, s.items, at(path, i))))
    }
    if (typeof v === 'string') {
      if (s.minLength !== undefined && [...v].length < s.minLength) out.push(`${where(path)} must have at least ${s.minLength} characters`)
      if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(v)) out.push(`${where(path)} ${JSON.stringify(v)} does not match ${s.pattern}`)
    }
    if (typeof v === 'number') {
      if (s.minimum !== undefined && v < s.minimum) out.push(`${where(path)} must be at least ${s.minimum}, got ${v}`)
      if (s.maximum !== undefined && v > s.maximum) out.push(`${where(path)} must be at most ${s.maximum}, got ${v}`)
    }
    for (const b of s.allOf || []) out.push(...this.errors(v, b, path))
    if (s.anyOf) {
      const each = s.anyOf.map((b) => this.errors(v, b, path))
      if (!each.some((e) => e.length === 0)) out.push(this.noneOf(path, each))
    }
    if (s.oneOf) {
      const each = s.oneOf.map((b) => this.errors(v, b, path))
      const ok = each.filter((e) => e.length === 0).length
      if (ok === 0) out.push(this.noneOf(path, each))
      if (ok > 1) out.push(`${where(path)} matches more than one of its exclusive forms`)
    }
    if (s.not && this.errors(v, s.not, path).length === 0) out.push(`${where(path)} ${forbidden(s.not)}`)
    if (s.if !== undefined) {
      const branch = this.errors(v, s.if, path).length === 0 ? s.then : s.else
      if (branch !== undefined) out.push(...this.errors(v, branch, path))
    }
    return out
  }

  /**
   * The reasons a value breaks the definition `ref`, in the Rust reference runner's words for
   * the two definitions whose reasons the shared wrong scenarios check
   * (tests/scenarios/wrong/failures.json): a payload, and a version relation.
   */
  named(ref, reasons, path) {
    if (reasons.length === 0) return reasons
    if (ref === '#/$defs/payload') {
      const none = `${where(path)} fits none of its allowed forms: `
      const why = reasons.map((r) => (r.startsWith(none) ? r.slice(none.length) : r)).join('; ')
      return [`${where(path)} must be a string, {"b64": ...} or {"repeat": ..., "count": n}: ${why}`]
    }
    if (ref === '#/$defs/version_relation') {
      const key = `${where(path)} does not take key `
      return reasons.map((r) => (r.startsWith(key) ? `unknown version relation ${r.slice(key.length)}` : r))
    }
    return reasons
  }

  /** One message for "no alternative matched", naming the closest alternatives' reasons. */
  noneOf(path, each) {
    // Alternatives that got past the type check say more than "must be a string"; of those,
    // the ones with the fewest complaints are the closest.
    const typed = each.filter((e) => !e.every((m) => / must be [\w ]+, got /.test(m)))
    const pool = typed.length > 0 ? typed : each
    const fewest = Math.min(...pool.map((e) => e.length))
    const shown = pool.filter((e) => e.length === fewest).map((e) => e.join('; '))
    return `${where(path)} fits none of its allowed forms: ${[...new Set(shown)].join(' | ')}`
  }

  /** Throws the first reasons `v` breaks the definition `ref` (e.g. `#/$defs/step`). */
  check(v, s, path) {
    const errs = this.errors(v, s, path)
    if (errs.length > 0) return errs.slice(0, 3).join('; ')
    return null
  }
}

module.exports = { SchemaChecker }

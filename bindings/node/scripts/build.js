#!/usr/bin/env node
// Builds the native addon from source. Runs as the npm `prepare` script, so `npm install` or
// `npm ci` in this folder, `npm pack`, and `npm install --install-links <this folder>` all
// build it. Uses the napi CLI when it is installed (it also regenerates the checked-in
// `index.js` loader and `index.d.ts` types), else plain cargo. An installed copy of the
// package (no Cargo.toml: built before packing) has nothing to build.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const release = !process.argv.includes('--debug')

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' })
  if (r.error) throw r.error
  if (r.status !== 0) process.exit(r.status ?? 1)
}

function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const glibc = process.report?.getReport()?.header?.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

const addon = `felix-client.${platformSuffix()}.node`

if (!fs.existsSync(path.join(root, 'Cargo.toml'))) {
  if (fs.existsSync(path.join(root, addon))) process.exit(0)
  console.error(`felix-client: no prebuilt ${addon} in this package and no sources to build it;`)
  console.error('install from the source folder (bindings/node) or a tarball packed on this platform')
  process.exit(1)
}

// The CLI's package exports do not expose its bin file: find it on disk.
let cli = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
if (!fs.existsSync(cli)) cli = null

if (cli) {
  const args = [cli, 'build', '--platform', '--js', 'index.js', '--dts', 'index.d.ts']
  if (release) args.push('--release')
  run(process.execPath, args)
} else {
  const args = ['build', '-p', 'felix-client-node', '--message-format=json-render-diagnostics']
  if (release) args.push('--release')
  const r = spawnSync('cargo', args, { cwd: root, stdio: ['inherit', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 28 })
  if (r.error) throw r.error
  if (r.status !== 0) process.exit(r.status ?? 1)
  let lib = null
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const m = JSON.parse(line)
    if (m.reason === 'compiler-artifact' && m.target?.name === 'felix_client_node') {
      lib = m.filenames.find((f) => /\.(so|dylib|dll)$/.test(f))
    }
  }
  if (!lib) {
    console.error('felix-client: cargo did not report the built library')
    process.exit(1)
  }
  fs.copyFileSync(lib, path.join(root, addon))
  console.log(`felix-client: built ${addon}`)
}

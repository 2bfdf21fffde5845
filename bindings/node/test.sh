#!/usr/bin/env bash
# Tests of the Node binding, from a fresh machine with only the registries: installs the
# package (npm ci; its `prepare` script builds the native addon with the napi CLI), builds
# felix-broker, checks that the generated loader and types are the checked-in ones, and runs
# the node:test suites (which start real brokers, run examples/node and tests/scenarios).
set -euo pipefail
cd "$(dirname "$0")"
repo="$(cd ../.. && pwd)"

command -v node >/dev/null || { echo "node not found: install Node.js >= 20" >&2; exit 1; }
echo "node $(node --version), npm $(npm --version)"

npm ci --no-audit --no-fund

(cd "$repo" && cargo build --locked -p felix-broker)
export FELIX_BROKER_BIN="${FELIX_BROKER_BIN:-$repo/target/debug/felix-broker}"

if git -C "$repo" ls-files --error-unmatch bindings/node/index.d.ts >/dev/null 2>&1; then
    git -C "$repo" diff --exit-code -- bindings/node/index.d.ts bindings/node/index.js ||
        { echo "index.js / index.d.ts differ from the generated ones: commit the regenerated files" >&2; exit 1; }
fi

node --test --test-concurrency=1 --test-timeout=120000 test/*.test.js

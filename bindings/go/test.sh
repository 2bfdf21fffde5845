#!/usr/bin/env bash
# Tests of the Go binding, called by scripts/test. Builds the broker and the static C ABI
# library from this workspace (never downloads one), then vets and race-tests the binding
# against a real broker (started by TestMain), runs examples/go and tests/scenarios (inside the
# tests), the C scenario runner (examples/c, installs libjansson-dev) and a short Go-vs-Rust
# bench. Only the Go standard library is used: no module downloads.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"
export GOFLAGS=-mod=mod
export FELIX_BROKER_BIN="${FELIX_BROKER_BIN:-$root/target/debug/felix-broker}"

step() { printf '\n==> %s\n' "$*"; }

if ! command -v go >/dev/null; then
    echo "go not found: install Go >= 1.22 (https://go.dev/dl)" >&2
    exit 1
fi
go version

step "cargo build -p felix-broker -p felix-ffi (debug: what the tests link)"
(cd "$root" && cargo build --locked -p felix-broker -p felix-ffi)

# Go's build cache keys a link on its flags, not on the static library's bytes: stamp the link
# with the library's hash so that a rebuilt library is always the one linked.
stamp() { echo "-ldflags=-X=github.com/felix-rs/felix/bindings/go.LibraryStamp=$(sha256sum "$root/target/$1/libfelix_ffi.a" | cut -c1-16)"; }

step "gofmt + go vet (bindings/go, examples/go)"
unformatted="$(gofmt -l . ../../examples/go)"
if [ -n "$unformatted" ]; then
    echo "gofmt needed: $unformatted" >&2
    exit 1
fi
go vet ./...
(cd ../../examples/go && go vet ./...)

step "go test -race ./... (real broker; includes examples/go)"
go test -race -count=1 -v "$(stamp debug)" ./... 2>&1 | grep -v '^=== ' 

step "C scenario runner: tests/scenarios through the C ABI (examples/c/scenarios.c, libjansson)"
if [ ! -e /usr/include/jansson.h ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    { $sudo apt-get update -q && $sudo apt-get install -y -q libjansson-dev; } >/dev/null || { echo "install libjansson-dev (apt-get)" >&2; exit 1; }
fi
(cd "$root" && cargo test --locked -p felix-ffi --test c_scenarios -- --ignored --nocapture)

if [ "${FELIX_GO_BENCH:-1}" = 1 ]; then
    step "bench smoke: Go binding vs Rust core, cache get (release)"
    (cd "$root" && cargo build --locked --release -p felix-broker && cargo build --locked --release -p felix-ffi --lib --example rust_cache_bench)
    go run -tags felix_release "$(stamp release)" ./bench -ops "${FELIX_GO_BENCH_OPS:-20000}"
fi

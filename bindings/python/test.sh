#!/usr/bin/env bash
# Python binding tests: venv in target/py-venv, the package installed from this path (never
# the unrelated `felix-client` on PyPI), pytest deps from PyPI, felix-broker built with cargo,
# then pytest against real broker processes. Exits non-zero on any failure, and when pytest
# collects no test (its exit code 5).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/target/py-venv"

python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "pytest>=7" "pytest-asyncio>=0.23"
# Builds the abi3 wheel with maturin (fetched by pip's build isolation) and installs it.
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$here"

(cd "$repo" && cargo build -q -p felix-broker)
export FELIX_BROKER_BIN="${FELIX_BROKER_BIN:-$repo/target/debug/felix-broker}"

cd "$here"
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider tests "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"

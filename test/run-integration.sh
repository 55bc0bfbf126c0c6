#!/usr/bin/env bash
# Runs the integration tests (test/integration/*.test.mjs) with Node's built-in test runner
# against one agentgate binary.
#   test/run-integration.sh [BINARY]      (default: $AGENTGATE_BIN, else build/agentgate)
# The binary must already be built; test/node_modules must be installed (`npm ci` in test/).
# Files run one at a time: several tests measure time (a crash must fail a call within 1 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export AGENTGATE_BIN="${1:-${AGENTGATE_BIN:-build/agentgate}}"
if [ "${AGENTGATE_TARGET:-gateway}" = gateway ] && [ ! -x "$AGENTGATE_BIN" ]; then
    echo "run-integration: $AGENTGATE_BIN is not built" >&2
    exit 1
fi
if [ ! -d test/node_modules/@modelcontextprotocol/sdk ]; then
    echo "run-integration: test/node_modules is missing: run 'npm ci' in test/ (or make deps-test)" >&2
    exit 1
fi
# Debian 12's Node is 18: the MCP SDK (in the tests and in the node servers they run) needs
# the Web Crypto global, which Node 18 has only behind a flag. NODE_OPTIONS reaches the
# daemon's children too.
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 19 ]; then
    export NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--experimental-global-webcrypto"
fi
args=()
# --test-concurrency exists from Node 20.10; older runners already take files one by one
# on a 2-core machine, and each test bounds its own time.
if node --help 2>/dev/null | grep -q -- '--test-concurrency'; then
    args+=(--test-concurrency=1)
fi
echo "== integration tests against $AGENTGATE_BIN (node $(node --version))"
# The whole run is bounded too (each test has its own timeout well below this).
exec timeout --kill-after=10 900 node --test "${args[@]}" test/integration/*.test.mjs

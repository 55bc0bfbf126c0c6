#!/bin/sh
# The client under test for the conformance suite's client scenarios: `agentgate probe`, with the
# per-scenario glue here (the suite appends the mock server's URL and sets
# MCP_CONFORMANCE_SCENARIO, and MCP_CONFORMANCE_CONTEXT for some). probe itself stays generic:
# it initializes, lists the tools and, when told to, calls one; it logs in by OAuth (headless)
# when the server challenges it.
#   tools_call  the mock serves one tool, add_numbers, and checks it was called with numbers
#   sse-retry   the mock serves test_reconnection, whose POST stream it cuts before answering
#   auth/*      the mocks serve test-tool (the scope scenarios challenge the call); the client
#               offers the suite's Client ID Metadata Document URL, and auth/pre-registration
#               gives a client_id and secret in the context (client-credentials-basic too,
#               for the client_credentials grant)
# AGENTGATE_BIN names the binary (the test sets it).
set -eu
url="$1"
bin="${AGENTGATE_BIN:?AGENTGATE_BIN is not set}"
scenario="${MCP_CONFORMANCE_SCENARIO:-}"
cimd=https://conformance-test.local/client-metadata.json
ctx() {
    node -e 'const c = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT || "{}"); process.stdout.write(String(c[process.argv[1]] ?? ""))' "$1"
}
case "$scenario" in
tools_call) exec "$bin" probe --call add_numbers --args '{"a":2,"b":3}' "$url" ;;
sse-retry) exec "$bin" probe --call test_reconnection "$url" ;;
auth/pre-registration)
    PROBE_CLIENT_SECRET="$(ctx client_secret)"
    export PROBE_CLIENT_SECRET
    exec "$bin" probe --call test-tool --client-id "$(ctx client_id)" \
        --client-secret-env PROBE_CLIENT_SECRET "$url" ;;
auth/client-credentials-basic)
    PROBE_CLIENT_SECRET="$(ctx client_secret)"
    export PROBE_CLIENT_SECRET
    exec "$bin" probe --call test-tool --client-credentials --client-id "$(ctx client_id)" \
        --client-secret-env PROBE_CLIENT_SECRET "$url" ;;
auth/*) exec "$bin" probe --call test-tool --client-metadata-url "$cimd" "$url" ;;
*) exec "$bin" probe "$url" ;;
esac

#!/bin/sh
# The client under test for the conformance suite's client scenarios: `agentgate probe`, with the
# per-scenario glue here (the suite appends the mock server's URL and sets
# MCP_CONFORMANCE_SCENARIO). probe itself stays generic: it initializes, lists the tools and,
# when told to, calls one.
#   tools_call  the mock serves one tool, add_numbers, and checks it was called with numbers
#   sse-retry   the mock serves test_reconnection, whose POST stream it cuts before answering
# Everything else (initialize, auth/*) is a plain probe: the handshake and tools/list.
# AGENTGATE_BIN names the binary (the test sets it).
set -eu
url="$1"
bin="${AGENTGATE_BIN:?AGENTGATE_BIN is not set}"
case "${MCP_CONFORMANCE_SCENARIO:-}" in
tools_call) exec "$bin" probe --call add_numbers --args '{"a":2,"b":3}' "$url" ;;
sse-retry) exec "$bin" probe --call test_reconnection "$url" ;;
*) exec "$bin" probe "$url" ;;
esac

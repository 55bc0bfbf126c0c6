#!/usr/bin/env bash
# Installs everything agentgate needs to build and test, from Debian's packages and npm.
# Usage: contrib/install-deps.sh [--test|--bench]
#   --test   also the test tools (Node, clang for the fuzzers) and the Node packages under test/
#   --bench  also what the benchmark needs (Node, valgrind); bench/run.sh installs its npm peers
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pkgs=(build-essential cmake pkg-config libuv1-dev libcurl4-openssl-dev libmbedtls-dev libcjson-dev
      libinih-dev libsodium-dev check libhttp-parser-dev)
want_test=0
want_node=0
case "${1:-}" in
--test) want_test=1; want_node=1; pkgs+=(nodejs npm libclang-rt-14-dev clang openssl) ;;
--bench) want_node=1; pkgs+=(nodejs npm valgrind) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from elsewhere on the machine; only ask apt when there is no node at all.
if [ $want_node = 1 ] && command -v node >/dev/null && command -v npm >/dev/null; then
    tmp=(); for p in "${missing[@]}"; do case "$p" in nodejs|npm) ;; *) tmp+=("$p");; esac; done
    missing=("${tmp[@]+"${tmp[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ $want_test = 1 ]; then
    (cd "$here/test" && npm ci --no-audit --no-fund --loglevel=error)
fi

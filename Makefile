# agentgate: the two commands a fresh Debian machine needs are `make run` and `make test`.
#   make run    install build dependencies, build, run `agentgate serve` in the foreground
#   make test   install build + test dependencies, build (plain and ASan/UBSan), run the unit
#               and integration tests against both builds
# The other targets are their steps.
SHELL := /bin/bash
JOBS ?= 2
ARGS ?=
# Warnings as errors (CMake option AG_WERROR): off for `make build`/`make run`, so a newer compiler's
# new warning does not stop a user; on for `make test` (and so CI) and for `make build-asan`.
WERROR ?= OFF

.PHONY: all deps deps-test deps-bench build build-asan run test unit integration bench clean

all: build

deps:
	contrib/install-deps.sh

deps-test:
	contrib/install-deps.sh --test

build:
	cmake -S . -B build -DAG_WERROR=$(WERROR)
	cmake --build build -j$(JOBS)

build-asan:
	cmake -S . -B build-asan -DAG_SANITIZE=ON -DAG_WERROR=ON
	cmake --build build-asan -j$(JOBS)

run: deps build
	./build/agentgate serve $(ARGS)

test: WERROR = ON
test: deps-test build build-asan
	test/run-all.sh

# Only the integration tests, against build/agentgate (or AGENTGATE_BIN=...).
integration:
	test/run-integration.sh $(AGENTGATE_BIN)

# The benchmark (bench/README.md): agentgate against direct stdio, supergateway, mcp-proxy and an
# HTTP floor, in one run of about 5 minutes; the report goes to bench/results/.
deps-bench:
	contrib/install-deps.sh --bench

bench: deps-bench build
	bench/run.sh

clean:
	rm -rf build build-asan

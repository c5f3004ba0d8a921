# JetSource. `make test` needs nothing running: it embeds NATS and starts a
# throwaway PostgreSQL, and runs the Node.js client's tests with node (both
# installed from Debian's packages when run as root and missing; npm ci
# fetches the client's locked packages from npm).
SHELL := /bin/bash
export GOTOOLCHAIN := local
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin

.PHONY: all build test lint bench fuzz chaos images run clean

all: lint test

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The packages mostly wait (for servers, processes, timers and fsync), so
# one more runs at a time than there are CPUs, and test/integration, which
# takes most of the run, starts first (go test starts packages in the order
# given). -ldflags=-w leaves DWARF out of the test binaries, a third less
# linking (stack traces and race reports do not use it).
TEST_PACKAGES_AT_ONCE := $(shell echo $$(( $$(getconf _NPROCESSORS_ONLN) + 1 )))

test:
	$(GO) test -race -count=1 -timeout 20m -ldflags=-w -p $(TEST_PACKAGES_AT_ONCE) ./test/integration ./...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "not gofmt-formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# The command path's production matrix (R1 and R3, default fsync interval and
# fsync before every ack; see test/bench/main.go for the JETSOURCE_BENCH_*
# settings), the naive PostgreSQL event table and the cold load, then
# projection throughput, rebuild rate and the raw pgx baseline over
# 1,000,000 events.
bench:
	$(GO) run ./test/bench
	JETSOURCE_BENCH_EVENTS=$${JETSOURCE_BENCH_EVENTS:-1000000} \
		$(GO) test -run '^$$' -bench BenchmarkProjections -benchtime 1x -timeout 30m ./internal/projections

# The long fault runs, each printing a summary (JETSOURCE_CHAOS_SEED replays
# a schedule): SIGKILLs of every binary under load; SIGKILLs of the nodes of
# a three-node nats-server cluster (R3, fsync per write) and of its events
# leader, and nodes restarted on an empty store; PostgreSQL killed during
# projection and during a rebuild; aggregators frozen with SIGSTOP; the
# linearizability check with aggregators killed; the cluster failover,
# restarts of NATS and PostgreSQL, and the events stream recreated below the
# projectors' cursors.
chaos:
	JETSOURCE_CHAOS_ORDERS=$${JETSOURCE_CHAOS_ORDERS:-2000} JETSOURCE_CHAOS_KILLS=$${JETSOURCE_CHAOS_KILLS:-25} \
	JETSOURCE_CHAOS_NATS_ORDERS=$${JETSOURCE_CHAOS_NATS_ORDERS:-600} JETSOURCE_CHAOS_NATS_KILLS=$${JETSOURCE_CHAOS_NATS_KILLS:-12} \
	JETSOURCE_CHAOS_DISK_ORDERS=$${JETSOURCE_CHAOS_DISK_ORDERS:-300} JETSOURCE_CHAOS_DISK_KILLS=$${JETSOURCE_CHAOS_DISK_KILLS:-3} \
	JETSOURCE_CHAOS_PG_ORDERS=$${JETSOURCE_CHAOS_PG_ORDERS:-1000} JETSOURCE_CHAOS_PG_KILLS=$${JETSOURCE_CHAOS_PG_KILLS:-10} \
	JETSOURCE_CHAOS_PG_REBUILD_KILLS=$${JETSOURCE_CHAOS_PG_REBUILD_KILLS:-3} \
	JETSOURCE_CHAOS_FREEZE_ORDERS=$${JETSOURCE_CHAOS_FREEZE_ORDERS:-600} JETSOURCE_CHAOS_FREEZE_KILLS=$${JETSOURCE_CHAOS_FREEZE_KILLS:-10} \
	JETSOURCE_CHAOS_LZ_KILLS=$${JETSOURCE_CHAOS_LZ_KILLS:-15} \
		$(GO) test -count=1 -v -timeout 60m \
		-run 'TestChaos|TestNATSNode|TestPostgresKilled|TestAggregatorFrozen|TestCommandsAreLinearizable|TestClusterLeaderFailover|Restart|TestLostEvents' ./test/integration

# The all-in-one dev stack: NATS, Postgres, the aggregator and the projectors
# in one process, with a demo workload; data in .data. Flags: ARGS="--reset".
# Built rather than `go run`, which exits 1 on Ctrl-C even after a clean stop.
run:
	$(GO) build -o $(BIN)/orderctl ./cmd/orderctl
	$(BIN)/orderctl dev $(ARGS)

# Searches for command-parsing inputs that break the invariants of FuzzParse;
# `make test` runs only its seed corpus.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $${FUZZTIME:-60s} ./internal/aggregator

# Container images (needs Docker with BuildKit); see docs/operations.md.
images:
	docker build -f deploy/Dockerfile --build-arg BINARY=aggregator -t jetsource/aggregator:dev .
	docker build -f deploy/Dockerfile --build-arg BINARY=projector -t jetsource/projector:dev .
	docker build -f deploy/Dockerfile --build-arg BINARY=query -t jetsource/query:dev .
	docker build -f deploy/Dockerfile --build-arg BINARY=orderctl -t jetsource/orderctl:dev .

clean:
	rm -rf $(BIN)

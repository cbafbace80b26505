# Orderflow. `make run` starts the whole system; `make test` runs every test.
SHELL := /bin/bash
GO    ?= go
PKGS  := ./...

.PHONY: run test generate check-generated vuln bench chaos deps up up-secure down check-services vet fmt

## run: the whole system in one process (embedded Kafka unless KAFKA_BROKERS is set)
run: check-services
	$(GO) run ./cmd/orderflow

# The packages that run services on the tests' broker run a second time
# with it secured (internal/kafkatest): SCRAM-SHA-512 over TLS, each
# service's user held to its ACLs.
SECURE_PKGS := ./services/... ./internal/servicetest ./internal/kafkatest ./cmd/orderflowctl ./pkg/service

## test: every test, against local PostgreSQL and RabbitMQ and the embedded broker; then the services'
## tests again with the broker secured (KAFKA_TEST_SECURITY=on)
test: check-services check-generated
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on: $$(gofmt -l $$(git ls-files '*.go'))"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	KAFKA_TEST_SECURITY=on $(GO) test -race -count=1 -timeout 20m $(SECURE_PKGS)

# sqlc is a tool of its own module (tools/go.mod), so its dependencies
# (a SQL parser in WebAssembly, gRPC, MySQL and SQLite drivers...) stay out
# of the main module's graph.
SQLC := $(GO) tool -modfile=tools/go.mod sqlc

## generate: sqlc code and the event catalogue
generate:
	$(SQLC) generate
	$(GO) generate ./pkg/events/contract ./internal/asyncapi

## check-generated: fail when generated code is stale
check-generated:
	@$(SQLC) diff || { echo "sqlc output is stale: run make generate"; exit 1; }

# govulncheck (golang.org/x/vuln) is a tool of tools/go.mod too, like sqlc,
# so its dependencies stay out of the main module's graph. It reads the Go
# vulnerability database at vuln.go.dev, or at GOVULNDB (make variable, passed
# as -db): a local mirror, e.g. GOVULNDB=file:///srv/vulndb.
GOVULNCHECK := $(GO) tool -modfile=tools/go.mod govulncheck

## vuln: govulncheck over ./..., against vuln.go.dev (or GOVULNDB=<url> make vuln); fails when the code
## reaches a known vulnerability, and when the database is unreachable (it says so). Needs network, so
## make test does not run it
vuln:
	@out=$$(mktemp); trap 'rm -f "$$out"' EXIT; \
	$(GOVULNCHECK) $(if $(GOVULNDB),-db '$(GOVULNDB)') $(PKGS) 2>&1 | tee "$$out"; status=$${PIPESTATUS[0]}; \
	if [ "$$status" != 0 ] && grep -q '^govulncheck: fetching vulnerabilities' "$$out"; then \
		echo "make vuln: the vulnerability database ($(or $(GOVULNDB),vuln.go.dev)) is unreachable from here; run it where it is, e.g. in CI with network"; \
	fi; \
	exit $$status

## bench: the in-process benchmarks (./bench/... and the bench/watermill module, output teed to
## .data/bench/*.txt), then the whole system from outside (cmd/benchrun: cmd/orderflow as a process under
## orderflowctl load's generator); writes bench/results.md and bench/throughput-lag.svg with every figure
## beside its target. About 12 minutes; state the machine when you quote them. Fails when a benchmark
## failed or the stack did not run, not when a target is missed.
bench: check-services
	@mkdir -p .data/bench; status=0; \
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/... 2>&1 | tee .data/bench/inprocess.txt; \
	[ "$${PIPESTATUS[0]}" = 0 ] || status=1; \
	if [ -f bench/watermill/go.mod ]; then \
		(cd bench/watermill && $(GO) test -v -run '^$$' -bench . -benchtime 1x -timeout 45m ./...) 2>&1 | tee .data/bench/watermill.txt; \
		[ "$${PIPESTATUS[0]}" = 0 ] || status=1; \
	else echo "bench/watermill: no module yet" > .data/bench/watermill.txt; fi; \
	$(GO) run ./cmd/benchrun -gotest .data/bench/inprocess.txt,.data/bench/watermill.txt || status=1; \
	exit $$status

## chaos: the system as processes under load, one fault after another, invariants checked after each
## (about 5 minutes; SOAK=1: about 20,000 orders in 9). Stops and restarts PostgreSQL and RabbitMQ: run it
## after make test, never beside it.
chaos: check-services
	scripts/chaos $(if $(SOAK),-soak) $(if $(ONLY),-only $(ONLY))

## check-services: one line and the fix when PostgreSQL or RabbitMQ is missing
check-services:
	@scripts/check-services

## deps: just PostgreSQL and RabbitMQ from deploy/compose.yaml, for machines with Docker
deps:
	docker compose -f deploy/compose.yaml up -d postgres rabbitmq

## up / down: the whole system in containers
up:
	docker compose -f deploy/compose.yaml up -d --build
down:
	docker compose -f deploy/compose.yaml down

## up-secure: the same with every security layer on (docs/production.md);
## needs deploy/secure.env, a filled copy of deploy/secure.env.example
up-secure:
	@test -f deploy/secure.env || { echo "deploy/secure.env is missing: copy deploy/secure.env.example and fill every variable (docs/production.md)"; exit 1; }
	docker compose --env-file deploy/secure.env -f deploy/compose.yaml -f deploy/compose.secure.yaml up -d --build

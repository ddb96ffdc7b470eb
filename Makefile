# Test services; override on the command line or in the environment.
export GORMCACHE_REDIS_ADDR ?= 127.0.0.1:6379
export GORMCACHE_PG_DSN ?= host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable
# A second PostgreSQL cluster with wal_level = logical, for the change feed (.ci/logical-pg.sh).
export GORMCACHE_PG_LOGICAL_DSN ?= host=127.0.0.1 port=5433 user=postgres dbname=test sslmode=disable

GO ?= go
BENCHCOUNT ?= 6

.PHONY: test services vet lint bench bench-cache fuzz demo torture

# The modules whose tests and vet run besides the library's and the examples': each is its own
# workspace (its go.work), so that its test-only dependencies stay out of the library's go.mod
# and do not raise what the library resolves. benchmarks/ is vetted by lint and run by bench.
NESTED := contrib/prometheus contrib/otel internal/fidelity

## test: make PostgreSQL and Redis answer (start or install them), then vet and run every test with -race:
## the library and example/ (one workspace, go.work), then each module of NESTED.
## Packages run one at a time (-p 1): the fault tests check staleness bounds against the wall clock,
## and on two cores the torture package's instance processes would otherwise starve the
## heartbeats of the invalidation tests running beside them.
test: services vet
	$(GO) test -race -count=1 -p 1 -timeout 30m ./... ./example/...
	@for m in $(NESTED); do echo "cd $$m && $(GO) test -race -count=1 -timeout 10m ./..."; \
		(cd $$m && $(GO) test -race -count=1 -timeout 10m ./...) || exit 1; done

services:
	bash .ci/services.sh
	bash .ci/logical-pg.sh

## vet: go vet of the library, example/ and each module of NESTED.
vet:
	$(GO) vet ./... ./example/...
	@for m in $(NESTED); do echo "cd $$m && $(GO) vet ./..."; (cd $$m && $(GO) vet ./...) || exit 1; done

## lint: gofmt, go vet and staticcheck.
lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./... ./example/...
	cd benchmarks && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...
	@for m in $(NESTED); do echo "cd $$m && staticcheck ./..."; \
		(cd $$m && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...) || exit 1; done

## bench-cache: the library's own benchmarks (cache, repository, propagation); medians with benchstat.
## Rounds are interleaved (every benchmark once per round), so that a pair compared in the README
## (L2 hit vs bare GET, repository vs raw GORM) sees the same machine load.
bench-cache: services
	@for i in $$(seq $(BENCHCOUNT)); do \
		$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 60m ./cache/ ./repository/ || exit 1; \
	done
	$(GO) test -run '^$$' -bench Propagation -benchtime 10000x -count=$(BENCHCOUNT) ./invalidation/

## bench: the side-by-side suite against raw GORM and peer libraries; fills benchmarks/README.md and results.svg.
bench: services
	mkdir -p benchmarks/results
	cd benchmarks && $(GO) test -run '^$$' -bench . -benchmem -count=$(BENCHCOUNT) -timeout 90m . | tee results/bench.txt
	cd benchmarks && $(GO) run ./cmd/report -readme README.md -svg results.svg results/bench.txt

## fuzz: run every decoder's fuzz target (FUZZTIME each; 1e6+ executions at the default).
FUZZTIME ?= 120s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./cache/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./invalidation/
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(FUZZTIME) ./internal/bincodec/

## torture: the long fault-injection profile (>= 1e6 operations, >= 200 faults); prints the report.
torture: services
	$(GO) test -count=1 -v -run 'TestTorture$$' -timeout 60m ./internal/torture/ -torture.long

## demo: the multi-instance demo on embedded servers.
demo:
	$(GO) run ./example/multiinstance

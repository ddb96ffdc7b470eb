package repository

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/gormcache/gormcache/internal/leakcheck"
	"github.com/gormcache/gormcache/internal/testenv"
)

// TestMain fails the package if any test leaves a goroutine running. The
// examples run against the shared Redis and PostgreSQL: without their
// environment variables (a plain `go test` on a laptop) they are skipped, as
// the tests that need those services skip.
func TestMain(m *testing.M) {
	if os.Getenv(testenv.EnvRedis) == "" || os.Getenv(testenv.EnvPostgres) == "" {
		skipExamples()
	}
	leakcheck.VerifyTestMain(m)
}

// skipExamples adds the examples to -test.skip.
func skipExamples() {
	flag.Parse()
	skip := flag.Lookup("test.skip")
	if skip == nil {
		return
	}
	re := "^Example"
	if v := skip.Value.String(); v != "" {
		re = v + "|" + re
	}
	if err := skip.Value.Set(re); err != nil {
		return
	}
	fmt.Printf("examples skipped: %s or %s not set: run `make test` to start Redis and PostgreSQL and run them\n", testenv.EnvRedis, testenv.EnvPostgres)
}

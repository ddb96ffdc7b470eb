package repository

import (
	"testing"

	"github.com/gormcache/gormcache/internal/leakcheck"
	"github.com/gormcache/gormcache/internal/testenv"
)

// TestMain fails the package if any test leaves a goroutine running. The
// examples run against the shared Redis and PostgreSQL, and are skipped
// without them as the tests that need those services skip.
func TestMain(m *testing.M) {
	testenv.SkipExamplesWithout(testenv.EnvRedis, testenv.EnvPostgres)
	leakcheck.VerifyTestMain(m)
}

package repository

import (
	"testing"

	"github.com/gormcache/gormcache/internal/leakcheck"
)

// TestMain fails the package if any test leaves a goroutine running.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

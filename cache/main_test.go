package cache

import (
	"testing"

	"github.com/gormcache/gormcache/internal/leakcheck"
)

// TestMain fails the package if any test leaves a goroutine running: Close
// must stop the maintenance loop, bigcache's cleaner and background fills.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

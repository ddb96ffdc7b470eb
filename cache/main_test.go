package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine running: Close
// must stop the maintenance loop, bigcache's cleaner and background fills.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

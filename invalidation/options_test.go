package invalidation

import (
	"testing"

	"github.com/gormcache/gormcache/cache"
)

// TestDefaultHealthWindowIsStalenessBound: a cache with Redis and no bus
// caps its L1 entries at cache.DefaultStalenessBound so as to be no more
// stale than with a bus; that holds only while the bus's default window is
// the same bound.
func TestDefaultHealthWindowIsStalenessBound(t *testing.T) {
	if DefaultHealthWindow != cache.DefaultStalenessBound {
		t.Fatalf("DefaultHealthWindow = %v, cache.DefaultStalenessBound = %v: they must agree", DefaultHealthWindow, cache.DefaultStalenessBound)
	}
}

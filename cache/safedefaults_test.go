package cache

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/internal/testenv"
)

// capAttrs picks out the log line that says L1 entries are capped.
var capAttrs = map[string]string{"l1_cap": ""}

// pair returns two caches on one Redis namespace, with no invalidation
// source attached, sharing a fake clock and without TTL jitter. mod adjusts
// both caches' options.
func pair(t *testing.T, mod func(*Options)) (a, b *Cache, clk *fakeClock, logs *testenv.LogRecorder) {
	t.Helper()
	clk, logs = newFakeClock(), &testenv.LogRecorder{}
	a, rdb := newCache(t, func(o *Options) {
		o.Clock, o.TTLJitter = clk, -1
		if mod != nil {
			mod(o)
		}
	})
	b, _ = newCache(t, func(o *Options) {
		o.Redis, o.Namespace = rdb, a.Namespace()
		o.Clock, o.TTLJitter, o.Logger = clk, -1, slog.New(logs)
		if mod != nil {
			mod(o)
		}
	})
	return a, b, clk, logs
}

// readVersion reads key through c and returns the version served, and
// whether it came from L1.
func readVersion(t *testing.T, c *Cache, key string, s *fakeSource) (uint64, bool) {
	t.Helper()
	before := c.Stats().L1Hits
	v := mustGet(t, c, key, s)
	return v.Version, c.Stats().L1Hits > before
}

// TestNoBusCapsL1: two instances share a namespace without a bus. After a
// write through one, the other serves its L1 copy of the old row no longer
// than DefaultStalenessBound after it filled it, then the new row; and it
// logs once that its L1 entries are capped.
func TestNoBusCapsL1(t *testing.T) {
	t.Parallel()
	a, b, clk, logs := pair(t, nil)
	s := newSource()
	key := t.Name()
	s.put(key, sampleRow(1, 1))
	if v, _ := readVersion(t, b, key, s); v != 1 {
		t.Fatalf("first read: version %d", v)
	}
	if v, l1 := readVersion(t, b, key, s); v != 1 || !l1 {
		t.Fatalf("second read: version %d, from L1 %v: L1 must still serve without a bus", v, l1)
	}
	s.put(key, sampleRow(1, 2))
	if err := a.Invalidate(context.Background(), key, 2); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultStalenessBound - time.Millisecond)
	if v, l1 := readVersion(t, b, key, s); v != 1 || !l1 {
		t.Fatalf("within the cap: version %d, from L1 %v (expected the old L1 copy)", v, l1)
	}
	clk.Advance(time.Millisecond)
	if v, l1 := readVersion(t, b, key, s); v != 2 || l1 {
		t.Fatalf("at the cap: version %d, from L1 %v: the old row outlived DefaultStalenessBound", v, l1)
	}
	if v, l1 := readVersion(t, b, key, s); v != 2 || !l1 {
		t.Fatalf("after the cap: version %d, from L1 %v: the new row must be cached in L1 again", v, l1)
	}
	if n := len(logs.Matching(slog.LevelWarn, capAttrs)); n != 1 {
		t.Fatalf("%d warnings that L1 is capped, want exactly 1", n)
	}
}

// TestNoBusCapsNotFound: a cached "not found" is capped the same way, so a
// row another instance inserts is seen within the bound.
func TestNoBusCapsNotFound(t *testing.T) {
	t.Parallel()
	a, b, clk, _ := pair(t, nil)
	s := newSource()
	key := t.Name()
	for range 2 {
		if _, err := Get(context.Background(), b, key, s.load); !isNotFound(err) {
			t.Fatalf("want not found, got %v", err)
		}
	}
	s.put(key, sampleRow(1, 1))
	if err := a.Invalidate(context.Background(), key, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultStalenessBound)
	if v, _ := readVersion(t, b, key, s); v != 1 {
		t.Fatalf("version %d after the cap: the cached not-found outlived DefaultStalenessBound", v)
	}
}

// TestNoBusStillCoalesces: capping L1 does not close the gate that lets
// concurrent misses join one load.
func TestNoBusStillCoalesces(t *testing.T) {
	t.Parallel()
	_, b, _, _ := pair(t, nil)
	key := t.Name()
	const callers = 9
	var waiting atomic.Int32
	defer failpoint.Set(failpoint.Waiting, key, func(context.Context, string) { waiting.Add(1) })()
	release := make(chan struct{})
	var loads atomic.Int32
	load := func(context.Context, string) (row, uint64, error) {
		loads.Add(1)
		<-release
		return sampleRow(1, 1), 1, nil
	}
	ctx, cancel := context.WithCancel(context.Background()) // cancellable: the callers pass the Waiting point
	defer cancel()
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Get(ctx, b, key, load); err != nil {
				t.Error(err)
			}
		}()
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return waiting.Load() == callers }, "callers in flight: %d", waiting.Load())
	close(release)
	wg.Wait()
	if n, j := loads.Load(), b.Stats().Coalesce; n != 1 || j != callers-1 {
		t.Fatalf("%d loads and %d joins for %d concurrent callers without a bus, want 1 and %d", n, j, callers, callers-1)
	}
}

// TestSingleInstanceKeepsL1TTL: with SingleInstance, L1 entries live
// L1TTL, as declared, and nothing is logged. (Two caches on one namespace
// are exactly what SingleInstance promises away; they show the lifetime.)
func TestSingleInstanceKeepsL1TTL(t *testing.T) {
	t.Parallel()
	a, b, clk, logs := pair(t, func(o *Options) { o.SingleInstance = true })
	s := newSource()
	key := t.Name()
	s.put(key, sampleRow(1, 1))
	readVersion(t, b, key, s)
	s.put(key, sampleRow(1, 2))
	if err := a.Invalidate(context.Background(), key, 2); err != nil {
		t.Fatal(err)
	}
	clk.Advance(b.opts.L1TTL - time.Millisecond)
	if v, l1 := readVersion(t, b, key, s); v != 1 || !l1 {
		t.Fatalf("within L1TTL: version %d, from L1 %v: SingleInstance must keep L1TTL", v, l1)
	}
	clk.Advance(time.Millisecond)
	if v, _ := readVersion(t, b, key, s); v != 2 {
		t.Fatalf("after L1TTL: version %d", v)
	}
	if n := len(logs.Matching(slog.LevelWarn, capAttrs)); n != 0 {
		t.Fatalf("%d warnings that L1 is capped with SingleInstance set", n)
	}
}

// TestInvalidationSourceLiftsCap: once an invalidation source controls the
// L1 gate, entries live L1TTL again (the source bounds staleness).
func TestInvalidationSourceLiftsCap(t *testing.T) {
	t.Parallel()
	_, b, clk, _ := pair(t, nil)
	b.SetLocalServing(true)
	s := newSource()
	key := t.Name()
	s.put(key, sampleRow(1, 1))
	readVersion(t, b, key, s)
	clk.Advance(10 * DefaultStalenessBound)
	if _, l1 := readVersion(t, b, key, s); !l1 {
		t.Fatal("L1 entry expired at DefaultStalenessBound with an invalidation source attached")
	}
}

// TestProcessLocalUncapped: a cache without Redis keeps L1 entries for
// L1TTL, whatever SingleInstance says, and logs nothing.
func TestProcessLocalUncapped(t *testing.T) {
	t.Parallel()
	clk, logs := newFakeClock(), &testenv.LogRecorder{}
	c, err := New(context.Background(), Options{Clock: clk, TTLJitter: -1, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := newSource()
	key := t.Name()
	s.put(key, sampleRow(1, 1))
	readVersion(t, c, key, s)
	clk.Advance(c.opts.L1TTL - time.Millisecond)
	if _, l1 := readVersion(t, c, key, s); !l1 {
		t.Fatal("a process-local cache's L1 entry expired before L1TTL")
	}
	if n := s.calls.Load(); n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
	if n := len(logs.Matching(slog.LevelWarn, capAttrs)); n != 0 {
		t.Fatalf("%d warnings that L1 is capped on a process-local cache", n)
	}
}

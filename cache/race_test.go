package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// A raceScenario forces one interleaving that leaves a stale entry in a naive
// cache, then reports whether a read after the write's acknowledgement saw
// the old version. TestRaces runs each scenario twice: with its guard (it must
// stay fresh) and with the guard switched off through a failpoint (it must go
// stale, which proves the scenario really exercises that guard).
type raceScenario struct {
	name   string
	guards []string // the mitigation: every layer of it is switched off together
	opts   func(*Options)
	run    func(t *testing.T, c *Cache, key string) (stale bool)
}

// once wraps a hook so it acts on its first call only.
func once(h failpoint.Hook) failpoint.Hook {
	var o sync.Once
	return func(ctx context.Context, key string) { o.Do(func() { h(ctx, key) }) }
}

func noL1(o *Options) { o.L1MaxBytes = -1 }

var raceScenarios = []raceScenario{
	{
		// Race 1 in L2: the reader loads v1, the writer commits v2 and
		// invalidates, then the reader fills v1.
		name: "stale fill after invalidation in L2", guards: []string{failpoint.GuardLease, failpoint.GuardL2Fill}, opts: noL1,
		run: func(t *testing.T, c *Cache, key string) bool {
			s := newSource()
			s.put(key, sampleRow(1, 1))
			defer failpoint.Set(failpoint.AfterLoad, key, once(func(ctx context.Context, key string) {
				s.put(key, sampleRow(1, 2))
				c.Invalidate(ctx, key, 2)
			}))()
			mustGet(t, c, key, s) // overlaps the write: may return v1
			return mustGet(t, c, key, s).Version != 2
		},
	},
	{
		// Race 1/6 in L1: the reader got v1 from Redis, the write is
		// invalidated, then the reader fills L1 with v1.
		name: "stale fill after invalidation in L1", guards: []string{failpoint.GuardL1Order},
		run: func(t *testing.T, c *Cache, key string) bool {
			s := newSource()
			s.put(key, sampleRow(1, 1))
			mustGet(t, c, key, s)
			c.FlushLocal() // v1 now in Redis only
			defer failpoint.Set(failpoint.AfterL2Read, key, once(func(ctx context.Context, key string) {
				s.put(key, sampleRow(1, 2))
				c.Invalidate(ctx, key, 2)
			}))()
			mustGet(t, c, key, s)
			return mustGet(t, c, key, s).Version != 2
		},
	},
	{
		// Race 4: invalidations arrive out of order (v3, then a late v2); a
		// reader whose source lags (a replica) returns v2 and would fill it.
		name: "out-of-order invalidations", guards: []string{failpoint.GuardL2Max}, opts: noL1,
		run: func(t *testing.T, c *Cache, key string) bool {
			ctx := context.Background()
			s := newSource()
			s.put(key, sampleRow(1, 3))
			c.Invalidate(ctx, key, 3)
			c.Invalidate(ctx, key, 2) // late duplicate of an older write
			lagging := true
			load := func(ctx context.Context, key string) (row, uint64, error) {
				if lagging { // one read from a replica that has not applied v3
					lagging = false
					return sampleRow(1, 2), 2, nil
				}
				return s.load(ctx, key)
			}
			Get(ctx, c, key, load) // v2, returned but known stale
			c.Settle()
			v, _ := Get(ctx, c, key, load)
			return v.Version != 3
		},
	},
	{
		// Race 6: a caller arriving after the write is acknowledged must not
		// join the load that began before it.
		name: "late singleflight joiner", guards: []string{failpoint.GuardForget},
		run: func(t *testing.T, c *Cache, key string) bool {
			s := newSource()
			s.put(key, sampleRow(1, 1))
			entered, release := make(chan struct{}), make(chan struct{})
			defer failpoint.Set(failpoint.AfterLoad, key, once(func(context.Context, string) {
				close(entered)
				<-release
			}))()
			joined := make(chan struct{}, 2)
			defer failpoint.Set(failpoint.Waiting, key, func(context.Context, string) { joined <- struct{}{} })()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			first := make(chan row, 1)
			go func() { v, _ := Get(ctx, c, key, s.load); first <- v }()
			<-joined
			<-entered // the first load read v1 and is held
			s.put(key, sampleRow(1, 2))
			c.Invalidate(ctx, key, 2) // the write is acknowledged

			second := make(chan row, 1)
			go func() { v, _ := Get(ctx, c, key, s.load); second <- v }()
			<-joined       // the second caller has started or joined a flight
			close(release) // let the first load finish
			<-first
			return (<-second).Version != 2
		},
	},
	{
		// Race 7: bigcache returns entries past their TTL until its clean
		// window runs; the envelope's expiry must be checked on read.
		name: "expired L1 entry not served", guards: []string{failpoint.GuardExpiry},
		opts: func(o *Options) { o.Clock = newFakeClock() },
		run: func(t *testing.T, c *Cache, key string) bool {
			s := newSource()
			s.put(key, sampleRow(1, 1))
			mustGet(t, c, key, s)
			s.put(key, sampleRow(1, 2)) // a write that bypassed the library
			c.opts.Clock.(*fakeClock).Advance(c.opts.L2TTL + time.Second)
			return mustGet(t, c, key, s).Version != 2
		},
	},
	{
		// Race 10: a reader found nothing, the row is inserted and
		// invalidated, then the reader fills "not found".
		name: "not-found does not shadow a later insert", guards: []string{failpoint.GuardLease, failpoint.GuardL2Fill},
		run: func(t *testing.T, c *Cache, key string) bool {
			s := newSource()
			defer failpoint.Set(failpoint.AfterLoad, key, once(func(ctx context.Context, key string) {
				s.put(key, sampleRow(1, 1))
				c.Invalidate(ctx, key, 1)
			}))()
			Get(context.Background(), c, key, s.load) // overlaps the insert
			c.Settle()
			_, err := Get(context.Background(), c, key, s.load)
			return err != nil
		},
	},
}

func TestRaces(t *testing.T) {
	for _, sc := range raceScenarios {
		t.Run(sc.name, func(t *testing.T) { bothReadPaths(t, func(t *testing.T) { raceBothWays(t, sc) }) })
	}
}

// bothReadPaths runs f with Redis reads starting with the read script (a
// new cache) and with a plain GET first (a cache whose reads mostly hit).
func bothReadPaths(t *testing.T, f func(t *testing.T)) {
	t.Run("script first", f)
	t.Run("GET first", func(t *testing.T) {
		initialWarmth.Store(warmMax)
		defer initialWarmth.Store(0)
		f(t)
	})
}

func raceBothWays(t *testing.T, sc raceScenario) {
	opts := func(o *Options) { // each scenario runs one cache on its namespace
		o.SingleInstance = true
		if sc.opts != nil {
			sc.opts(o)
		}
	}
	t.Run("guarded", func(t *testing.T) {
		c, _ := newCache(t, opts)
		if sc.run(t, c, t.Name()) {
			t.Fatal("read the old version after the write was acknowledged")
		}
	})
	t.Run("guard off", func(t *testing.T) {
		for _, g := range sc.guards {
			defer failpoint.Disable(g)()
		}
		c, _ := newCache(t, opts)
		if !sc.run(t, c, t.Name()) {
			t.Fatalf("no stale read with %v switched off: the scenario does not exercise it", sc.guards)
		}
	})
}

// TestL1NeverOutlivesL2 checks that an entry filled into L1 from Redis expires
// no later than the Redis entry does.
func TestL1NeverOutlivesL2(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	c, _ := newCache(t, func(o *Options) { o.Clock = clk; o.L1TTL = time.Hour; o.TTLJitter = -1; o.SingleInstance = true })
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, c, "k", s, WithTTL(30*time.Second), SkipL1()) // Redis: 30s left
	clk.Advance(20 * time.Second)
	mustGet(t, c, "k", s) // L2 hit fills L1: must expire in 10s, not 1h
	s.put("k", sampleRow(1, 2))
	clk.Advance(11 * time.Second)
	if got := mustGet(t, c, "k", s); got.Version != 2 {
		t.Fatalf("L1 kept the entry past its L2 expiry: version %d", got.Version)
	}
}

// TestDeleteThenReinsert checks race 10's other half: a delete leaves a
// tombstone at last version + 1, and a re-insert restarting at version 1 is
// served from the source, never shadowed by a cached not-found.
func TestDeleteThenReinsert(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	ctx := context.Background()
	s := newSource()
	s.put("k", sampleRow(1, 5))
	mustGet(t, c, "k", s)
	s.del("k")
	c.Invalidate(ctx, "k", 6)
	for i := 0; i < 2; i++ {
		if _, err := Get(ctx, c, "k", s.load); !isNotFound(err) {
			t.Fatalf("after delete: %v", err)
		}
	}
	s.put("k", sampleRow(1, 1))
	c.Invalidate(ctx, "k", 1)
	for i := 0; i < 2; i++ {
		if got := mustGet(t, c, "k", s); got.Version != 1 {
			t.Fatalf("re-inserted row read as version %d", got.Version)
		}
	}
}

// TestUnversionedInvalidation covers sources without a version column: the
// tombstone is stamped newer than anything stored, and a load that began
// before the write is rejected.
func TestUnversionedInvalidation(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, noL1)
	ctx := context.Background()
	key := t.Name()
	val := "v1"
	load := func(ctx context.Context, key string) (string, uint64, error) { return val, 0, nil }
	if v, _ := Get(ctx, c, key, load); v != "v1" {
		t.Fatal(v)
	}
	c.Settle()
	val = "v2"
	c.Invalidate(ctx, key, 0)
	if v, _ := Get(ctx, c, key, load); v != "v2" {
		t.Fatalf("after unversioned invalidate: %q", v)
	}
	// A load overtaken by an unversioned write does not fill.
	restore := failpoint.Set(failpoint.AfterLoad, key, once(func(ctx context.Context, key string) {
		val = "v3"
		c.Invalidate(ctx, key, 0)
	}))
	c.Invalidate(ctx, key, 0)
	Get(ctx, c, key, load)
	c.Settle()
	restore()
	if v, _ := Get(ctx, c, key, load); v != "v3" {
		t.Fatalf("stale unversioned fill: %q", v)
	}
	if c.Stats().RejectedFills == 0 {
		t.Fatal("no fill was rejected")
	}
}

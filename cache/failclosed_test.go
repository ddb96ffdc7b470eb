package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/internal/testenv"
)

// The tests of this file make Redis lose, evict or refuse what it
// acknowledged, each on a throwaway redis-server, and run twice like
// TestRaces: with the mitigation (the read after the write must be fresh)
// and with it switched off (it must go stale, which proves the scenario
// exercises it).

// bothWays runs sc guarded and with guards off.
func bothWays(t *testing.T, guards []string, sc func(t *testing.T) (stale bool)) {
	bothReadPaths(t, func(t *testing.T) { guardBothWays(t, guards, sc) })
}

func guardBothWays(t *testing.T, guards []string, sc func(t *testing.T) (stale bool)) {
	t.Run("guarded", func(t *testing.T) {
		if sc(t) {
			t.Fatal("read the old version after the write was acknowledged")
		}
	})
	t.Run("guard off", func(t *testing.T) {
		for _, g := range guards {
			defer failpoint.Disable(g)()
		}
		if !sc(t) {
			t.Fatalf("no stale read with %v switched off: the scenario does not exercise it", guards)
		}
	})
}

// cacheOn returns a cache on the Redis at addr.
func cacheOn(t *testing.T, addr, ns string, mod func(*Options)) (*Cache, *redis.Client) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	o := Options{Redis: rdb, Namespace: ns, L1MaxBytes: -1, EpochInterval: 50 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	c, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, rdb
}

// TestEvictedTombstone: a load that read v1 fills after the write of v2,
// whose tombstone Redis has evicted meanwhile. Only the lease (voided by the
// invalidation) tells the fill is stale.
func TestEvictedTombstone(t *testing.T) {
	bothWays(t, []string{failpoint.GuardLease}, func(t *testing.T) bool {
		c, rdb := newCache(t, noL1)
		key := "k"
		s := newSource()
		s.put(key, sampleRow(1, 1))
		defer failpoint.Set(failpoint.AfterLoad, key, once(func(ctx context.Context, key string) {
			s.put(key, sampleRow(1, 2))
			c.Invalidate(ctx, key, 2)
			rdb.Del(ctx, c.l2.key(key)) // evicted (allkeys-lru, an operator's DEL)
		}))()
		mustGet(t, c, key, s)
		return mustGet(t, c, key, s).Version != 2
	})
}

// TestRestartFromOlderSnapshot: Redis restarts from a dump taken before a
// write; the dump holds the old value and no tombstone. The cache sees a new
// server identity and moves to a new epoch, in which the old entry is a miss.
func TestRestartFromOlderSnapshot(t *testing.T) {
	bothWays(t, []string{failpoint.GuardIncarnation}, func(t *testing.T) bool {
		dir := t.TempDir()
		srv, c, s := snapshotThenWrite(t, dir, "snap", nil)
		ctx := context.Background()
		before := c.Stats().Incarnations
		srv.Stop() // kill -9: the tombstone is lost, the dump has v1
		if _, err := os.Stat(filepath.Join(dir, "dump.rdb")); err != nil {
			t.Fatal(err)
		}
		srv.Start()
		testenv.WaitFor(5*time.Second, func() bool {
			_, err := Get(ctx, c, "probe", s.load)
			return isNotFound(err) && c.RedisHealthy() && (c.Stats().Incarnations > before || failpoint.Disabled(failpoint.GuardIncarnation))
		})
		return mustGet(t, c, "k", s).Version != 2
	})
}

// snapshotThenWrite starts a throwaway Redis saving to dir, caches v1 of
// "k", saves a snapshot, then writes and invalidates v2: the snapshot holds
// v1 and not the tombstone.
func snapshotThenWrite(t *testing.T, dir, ns string, mod func(*Options)) (*testenv.RedisServer, *Cache, *fakeSource) {
	t.Helper()
	srv := testenv.StartRedis(t, "--dir", dir, "--dbfilename", "dump.rdb")
	c, rdb := cacheOn(t, srv.Addr(), ns, mod)
	ctx := context.Background()
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, c, "k", s) // v1 in Redis
	if err := rdb.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s.put("k", sampleRow(1, 2))
	if err := c.Invalidate(ctx, "k", 2); err != nil {
		t.Fatal(err)
	}
	return srv, c, s
}

// TestRestoreWithinVouch: Redis restarts from an older snapshot right after
// an identity check, so the periodic check still vouches for it (one
// ServerCheckInterval of an hour here). The first read after the restart
// runs on a new connection, whose hook sees the new identity: the reply is
// discarded and the row read from the source. Without the hook the restored
// v1 is served, to the writer itself.
func TestRestoreWithinVouch(t *testing.T) {
	bothWays(t, []string{failpoint.GuardConnIdentity}, func(t *testing.T) bool {
		srv, c, s := snapshotThenWrite(t, t.TempDir(), "vouch", func(o *Options) { o.ServerCheckInterval = time.Hour })
		srv.Stop()
		srv.Start()
		return mustGet(t, c, "k", s).Version != 2
	})
}

// TestOOMInvalidation: Redis is out of memory (noeviction) and refuses the
// tombstone. The invalidation deletes the entry instead.
func TestOOMInvalidation(t *testing.T) {
	bothWays(t, []string{failpoint.GuardOOMDelete}, func(t *testing.T) bool {
		srv := testenv.StartRedis(t)
		c, rdb := cacheOn(t, srv.Addr(), "oom", nil)
		ctx := context.Background()
		s := newSource()
		s.put("k", sampleRow(1, 1))
		mustGet(t, c, "k", s)
		if err := rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil { // every write refused
			t.Fatal(err)
		}
		defer rdb.ConfigSet(ctx, "maxmemory", "0")
		s.put("k", sampleRow(1, 2))
		err := c.Invalidate(ctx, "k", 2)
		if err != nil {
			t.Fatal(err)
		}
		if !failpoint.Disabled(failpoint.GuardOOMDelete) && c.Stats().OOMDeletes == 0 {
			t.Error("the refused tombstone was not counted as a delete")
		}
		return mustGet(t, c, "k", s).Version != 2
	})
}

// TestStampedeAcrossInstances: four instances miss one cold key at once; the
// lease makes it one load for all of them.
func TestStampedeAcrossInstances(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	var loads atomic.Int64
	load := func(context.Context, string) (row, uint64, error) {
		loads.Add(1)
		time.Sleep(20 * time.Millisecond) // a query
		return sampleRow(1, 1), 1, nil
	}
	var caches []*Cache
	for range 4 {
		c, _ := cacheOn(t, testenv.RedisAddr(t), ns, func(o *Options) { o.L1MaxBytes = 0 })
		caches = append(caches, c)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range caches {
		for range 25 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if v, err := Get(context.Background(), c, "cold", load); err != nil || v.Version != 1 {
					t.Errorf("Get: %+v, %v", v, err)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		var waits uint64
		for _, c := range caches {
			waits += c.Stats().LeaseWaits
		}
		t.Fatalf("a stampede of 4 instances × 25 readers made %d loads (lease waits %d), want 1", n, waits)
	}
}

// TestRetireAfterOutsideWrite: a write made around the library leaves the
// version as it was; a retiring invalidation replaces the cached entry at
// that same version.
func TestRetireAfterOutsideWrite(t *testing.T) {
	bothWays(t, []string{failpoint.GuardRetire}, func(t *testing.T) bool {
		c, _ := newCache(t, noL1)
		ctx := context.Background()
		s := newSource()
		s.put("k", sampleRow(1, 5))
		mustGet(t, c, "k", s)
		r := sampleRow(1, 5)
		r.Name = "changed by SQL" // the version did not move
		s.put("k", r)
		if err := c.InvalidateMany(ctx, []Invalidation{{Key: "k", Version: 5, Retire: true}}); err != nil {
			t.Fatal(err)
		}
		// A load that began before the write and fills late carries v5 too:
		// it must not land either (its lease was voided).
		return mustGet(t, c, "k", s).Name != "changed by SQL"
	})
}

// TestReinsertAtLowerVersion: DELETE and INSERT again restart the version
// at 1; a retiring invalidation lets the new row be cached at once.
func TestReinsertAtLowerVersion(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, noL1)
	ctx := context.Background()
	s := newSource()
	s.put("k", sampleRow(1, 7))
	mustGet(t, c, "k", s)
	s.put("k", sampleRow(1, 1))
	if err := c.InvalidateMany(ctx, []Invalidation{{Key: "k", Retire: true}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if got := mustGet(t, c, "k", s); got.Version != 1 {
			t.Fatalf("read %d: version %d after the re-insert", i, got.Version)
		}
	}
	if _, l2, _ := c.Peek(ctx, "k"); l2.Kind != KindValue || l2.Version != 1 {
		t.Fatalf("the re-inserted row is not cached: %+v", l2)
	}
}

// TestUnconfirmedInvalidation: Redis does not answer the writer in time.
// The caller is told, and Close bumps the epoch once Redis answers, which
// retires the entry the lost tombstone should have.
func TestUnconfirmedInvalidation(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	proxy := testenv.NewProxy(t, addr)
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	w, _ := cacheOn(t, proxy.Addr(), ns, func(o *Options) { o.WriteTimeout = 300 * time.Millisecond })
	r, _ := cacheOn(t, addr, ns, nil)
	ctx := context.Background()
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, r, "k", s) // v1 in Redis
	proxy.Cut()
	s.put("k", sampleRow(1, 2))
	if err := w.Invalidate(ctx, "k", 2); !errors.Is(err, ErrInvalidationUnconfirmed) {
		t.Fatalf("Invalidate while Redis is unreachable: %v, want ErrInvalidationUnconfirmed", err)
	}
	if w.Stats().UnconfirmedInvalidations == 0 {
		t.Error("not counted")
	}
	proxy.Restore()
	if err := w.Close(); err != nil {
		t.Fatalf("Close after Redis came back: %v", err)
	}
	testenv.Eventually(t, 2*time.Second, func() bool { return mustGet(t, r, "k", s).Version == 2 },
		"the other instance still reads v1 after the writer's Close bumped the epoch")
}

// TestCloseReportsPendingBump: a writer that never reaches Redis again is
// told at Close that its invalidation is not covered.
func TestCloseReportsPendingBump(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewProxy(t, testenv.RedisAddr(t))
	w, _ := cacheOn(t, proxy.Addr(), testenv.Name(t), func(o *Options) { o.WriteTimeout = 200 * time.Millisecond })
	proxy.Cut()
	if err := w.Invalidate(context.Background(), "k", 2); !errors.Is(err, ErrInvalidationUnconfirmed) {
		t.Fatalf("Invalidate: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrInvalidationUnconfirmed) {
		t.Fatalf("Close with a pending bump Redis never took: %v, want ErrInvalidationUnconfirmed", err)
	}
}

// TestLongKey: a 2 KB key is stored under its hash and still read, filled
// and invalidated like any other; a key above MaxKeyLen is refused for
// reads and accepted for invalidations.
func TestLongKey(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	ctx := context.Background()
	key := strings.Repeat("k", 2048)
	s := newSource()
	s.put(key, sampleRow(1, 1))
	mustGet(t, c, key, s)
	mustGet(t, c, key, s)
	c.FlushLocal()
	if got := mustGet(t, c, key, s); got.Version != 1 || c.Stats().L2Hits == 0 {
		t.Fatalf("long key not served from Redis: %+v %+v", got, c.Stats())
	}
	s.put(key, sampleRow(1, 2))
	if err := c.Invalidate(ctx, key, 2); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, c, key, s); got.Version != 2 {
		t.Fatalf("after invalidation: version %d", got.Version)
	}
	m, err := GetMany(ctx, c, []string{key, "short"}, s.loadMany)
	if err != nil || m[key].Version != 2 {
		t.Fatalf("GetMany with a long key: %v %+v", err, m)
	}
	// The invalidation of a committed write never fails on its key's
	// length (a unique column's huge value): nothing is cached under it.
	if err := c.Invalidate(ctx, strings.Repeat("k", MaxKeyLen+1), 3); err != nil {
		t.Fatalf("invalidating a key above MaxKeyLen: %v", err)
	}
	if _, err := Get(ctx, c, strings.Repeat("k", MaxKeyLen+1), s.load); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("key above MaxKeyLen: %v", err)
	}
}

// TestSuspectRemote: a writer's tombstone never reached Redis, but its
// announcement that the invalidation is unconfirmed reached another
// instance (the bus calls SuspectRemote for it). That instance must not read
// the key from Redis, where the old row is still stored, until an epoch
// change retires it.
func TestSuspectRemote(t *testing.T) {
	bothWays(t, []string{failpoint.GuardSuspect}, func(t *testing.T) bool {
		addr := testenv.RedisAddr(t)
		proxy := testenv.NewProxy(t, addr)
		rdb := testenv.Redis(t)
		ns := testenv.Namespace(t, rdb)
		w, _ := cacheOn(t, proxy.Addr(), ns, func(o *Options) { o.WriteTimeout = 200 * time.Millisecond })
		r, _ := cacheOn(t, addr, ns, nil)
		r.SetLocalServing(true) // the test is r's bus: it calls SuspectRemote
		ctx := context.Background()
		s := newSource()
		s.put("k", sampleRow(1, 1))
		mustGet(t, r, "k", s) // v1 in L1 and Redis
		proxy.Cut()
		s.put("k", sampleRow(1, 2))
		if err := w.Invalidate(ctx, "k", 2); !errors.Is(err, ErrInvalidationUnconfirmed) {
			t.Fatalf("Invalidate while Redis is unreachable: %v, want ErrInvalidationUnconfirmed", err)
		}
		r.SuspectRemote([]string{"k"})
		return mustGet(t, r, "k", s).Version == 1
	})
}

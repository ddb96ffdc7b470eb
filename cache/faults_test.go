package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/internal/testenv"
)

// TestCorruptL2BytesAreAMiss plants bytes that are not a valid entry under a
// key's Redis key: each is counted, deleted and treated as a miss.
func TestCorruptL2BytesAreAMiss(t *testing.T) {
	t.Parallel()
	valid := appendEnvelope(nil, envelope{kind: KindValue, version: 1, schema: 42, payload: []byte(`{"id":1}`)})
	for name, plant := range map[string]func(ctx context.Context, rdb *redis.Client, k string) error{
		"garbage": func(ctx context.Context, rdb *redis.Client, k string) error {
			return rdb.Set(ctx, k, "\x00\xffgarbage", 0).Err()
		},
		"foreign": func(ctx context.Context, rdb *redis.Client, k string) error {
			return rdb.Set(ctx, k, `{"id":1}`, 0).Err()
		},
		"truncated": func(ctx context.Context, rdb *redis.Client, k string) error {
			return rdb.Set(ctx, k, valid[:len(valid)-3], 0).Err()
		},
		"empty": func(ctx context.Context, rdb *redis.Client, k string) error { return rdb.Set(ctx, k, "", 0).Err() },
		"wrong type": func(ctx context.Context, rdb *redis.Client, k string) error {
			return rdb.RPush(ctx, k, "a", "b").Err()
		},
		"bad payload": nil, // planted below: needs the cache's epoch and schema
		"bit flip":    nil, // likewise
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Generous Redis timeouts: the test is about corrupt bytes, and a
			// call timing out on a loaded machine would trip the breaker
			// and skip Redis instead.
			c, rdb := newCache(t, func(o *Options) { noL1(o); generousTimeouts(o) })
			ctx := context.Background()
			switch name {
			case "bad payload":
				plant = func(ctx context.Context, rdb *redis.Client, k string) error {
					b := appendEnvelope(nil, envelope{kind: KindValue, version: 1, epoch: c.l2.epoch.Load(),
						schema: schemaOf(reflectRow, c.codecHash), payload: []byte(`{"id":"not a number"`)})
					return rdb.Set(ctx, k, b, 0).Err()
				}
			case "bit flip": // a valid entry with one bit of its payload flipped
				plant = func(ctx context.Context, rdb *redis.Client, k string) error {
					p, _ := c.opts.Codec.Marshal(sampleRow(1, 1))
					b := appendEnvelope(nil, envelope{kind: KindValue, version: 1, epoch: c.l2.epoch.Load(),
						schema: schemaOf(reflectRow, c.codecHash), payload: p})
					b[len(b)-5] ^= 0x04
					return rdb.Set(ctx, k, b, 0).Err()
				}
			}
			if err := plant(ctx, rdb, c.l2.key("k")); err != nil {
				t.Fatal(err)
			}
			s := newSource()
			s.put("k", sampleRow(1, 1))
			if got := mustGet(t, c, "k", s); got.ID != 1 {
				t.Fatalf("got %+v", got)
			}
			before := c.Stats()
			if before.DecodeErrors == 0 {
				t.Fatal("corrupt bytes not counted")
			}
			if _, l2, _ := c.Peek(ctx, "k"); l2.Corrupt {
				t.Fatal("corrupt bytes left in Redis")
			}
			// The key holds a valid entry again after at most one more load.
			mustGet(t, c, "k", s)
			mustGet(t, c, "k", s)
			if st := c.Stats(); st.L2Hits == before.L2Hits || st.Loads > before.Loads+1 {
				t.Fatalf("corrupt entry not replaced: %+v", st)
			}
		})
	}
}

func TestCorruptL1BytesAreAMiss(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, c, "k", s)
	c.l1.bc.Set("k", []byte{envMagic, 1, 2, 3})
	if got := mustGet(t, c, "k", s); got.ID != 1 {
		t.Fatalf("got %+v", got)
	}
	if st := c.Stats(); st.DecodeErrors != 1 || st.L2Hits != 1 {
		t.Fatalf("stats %+v", st)
	}
}

var reflectRow = reflectTypeOf[row]()

// TestSchemaChangeIsAMiss simulates a deploy that changed the cached struct:
// the old bytes are never decoded into the new shape.
func TestSchemaChangeIsAMiss(t *testing.T) {
	t.Parallel()
	type userV1 struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	type userV2 struct { // Name retyped, same JSON key
		ID   int64    `json:"id"`
		Name []string `json:"name"`
	}
	c, _ := newCache(t, nil)
	ctx := context.Background()
	if _, err := Get(ctx, c, "u", func(context.Context, string) (userV1, uint64, error) {
		return userV1{1, "ada"}, 1, nil
	}); err != nil {
		t.Fatal(err)
	}
	v2, err := Get(ctx, c, "u", func(context.Context, string) (userV2, uint64, error) {
		return userV2{1, []string{"ada", "lovelace"}}, 1, nil
	})
	if err != nil || len(v2.Name) != 2 {
		t.Fatalf("new shape: %v %+v", err, v2)
	}
	if c.Stats().SchemaMismatches == 0 {
		t.Fatal("schema mismatch not counted")
	}
	if typeFingerprint(reflectTypeOf[userV1]()) == typeFingerprint(reflectTypeOf[userV2]()) {
		t.Fatal("fingerprints equal")
	}
}

// TestScriptFlush checks that the scripts survive SCRIPT FLUSH (as after a
// Redis restart or failover): NOSCRIPT is handled transparently.
func TestScriptFlush(t *testing.T) {
	c, rdb := newCache(t, func(o *Options) { noL1(o); generousTimeouts(o) })
	ctx := context.Background()
	s := newSource()
	s.put("a", sampleRow(1, 1))
	s.put("b", sampleRow(2, 1))
	mustGet(t, c, "a", s)
	for _, step := range []func() error{
		func() error { return c.Invalidate(ctx, "a", 2) },
		func() error { _, err := Get(ctx, c, "a", s.load); return err },
		func() error { _, err := GetMany(ctx, c, []string{"a", "b"}, s.loadMany); return err },
		func() error {
			return c.InvalidateMany(ctx, []Invalidation{{Key: "a", Version: 3}, {Key: "b", Version: 2}})
		},
	} {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.RedisErrors != 0 || st.TombstonesWritten != 3 {
		t.Fatalf("stats after SCRIPT FLUSH: %+v", st)
	}
}

// TestRedisOutage stops Redis (a throwaway server, killed by PID) and checks
// that reads keep working from the loader without errors, that calls stop
// waiting for Redis once it is marked down, and that after Redis comes back
// (empty) the cache adopts the new epoch.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := New(context.Background(), Options{Redis: rdb, Namespace: testenv.Name(t), L1MaxBytes: -1,
		RedisTimeout: 50 * time.Millisecond, RedisRetryAfter: 100 * time.Millisecond, EpochInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, c, "k", s)
	epoch := c.Stats().Epoch

	srv.Stop()
	const reads = 100
	for i := 0; i < reads; i++ {
		if got := mustGet(t, c, "k", s); got.ID != 1 {
			t.Fatal("wrong value during outage")
		}
	}
	st := c.Stats()
	if st.BreakerTrips == 0 || st.RedisSkips == 0 {
		t.Fatalf("Redis never marked down: %+v", st)
	}
	// Without the breaker every read would have waited for Redis; with it,
	// only the reads before it opened and one probe per retry period do.
	if st.RedisErrors >= reads/2 {
		t.Fatalf("%d of %d reads waited for Redis", st.RedisErrors, reads)
	}
	// A write during the outage is not forgotten, and its caller is told
	// that Redis did not confirm the invalidation.
	s.put("k", sampleRow(1, 2))
	if err := c.Invalidate(ctx, "k", 2); !errors.Is(err, ErrInvalidationUnconfirmed) {
		t.Fatalf("Invalidate during an outage: %v, want ErrInvalidationUnconfirmed", err)
	}
	if got := mustGet(t, c, "k", s); got.Version != 2 {
		t.Fatalf("read-your-writes during outage: version %d", got.Version)
	}

	srv.Start()
	testenv.Eventually(t, 10*time.Second, func() bool {
		return c.Stats().Epoch != epoch && c.RedisHealthy()
	}, "cache did not adopt a new epoch after Redis came back")
	if got := mustGet(t, c, "k", s); got.Version != 2 {
		t.Fatalf("after recovery: version %d", got.Version)
	}
}

// TestInvalidationLostToPartitionBumpsEpoch partitions one instance from a
// Redis that keeps its data: the instance's invalidation cannot reach Redis,
// so when the partition heals it bumps the namespace epoch, which retires
// the entry the other instance would otherwise keep reading.
func TestInvalidationLostToPartitionBumpsEpoch(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	proxy := testenv.NewProxy(t, addr)
	rdbA := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	rdbB := testenv.Redis(t)
	defer rdbA.Close()
	ns := testenv.Namespace(t, rdbB)
	mk := func(rdb redis.UniversalClient) *Cache {
		c, err := New(context.Background(), Options{Redis: rdb, Namespace: ns, L1MaxBytes: -1,
			RedisTimeout: 50 * time.Millisecond, RedisRetryAfter: 50 * time.Millisecond, EpochInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := mk(rdbA), mk(rdbB)
	ctx := context.Background()
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, a, "k", s) // v1 in Redis
	proxy.Cut()
	s.put("k", sampleRow(1, 2))
	a.Invalidate(ctx, "k", 2) // cannot reach Redis
	if a.Stats().PendingEpochBumps != 1 {
		t.Fatalf("stats %+v", a.Stats())
	}
	if got := mustGet(t, a, "k", s); got.Version != 2 {
		t.Fatalf("writer reads its own write: version %d", got.Version)
	}
	proxy.Restore()
	testenv.Eventually(t, 10*time.Second, func() bool {
		v, err := Get(ctx, b, "k", s.load)
		return err == nil && v.Version == 2 && b.Stats().EpochChanges > 0
	}, "the other instance did not adopt a new epoch, or kept reading the entry the lost invalidation should have retired")
}

// TestRedisHangs blackholes Redis (connections accepted, never answered):
// reads still succeed from the loader, each waiting at most RedisTimeout,
// and once Redis is marked down they stop waiting at all.
func TestRedisHangs(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewProxy(t, testenv.RedisAddr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := New(context.Background(), Options{Redis: rdb, Namespace: testenv.Namespace(t, testenv.Redis(t)),
		L1MaxBytes: -1, RedisTimeout: 100 * time.Millisecond, RedisRetryAfter: time.Hour, EpochInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testenv.Eventually(t, 10*time.Second, c.RedisHealthy, "Redis never in use")
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, c, "k", s)
	proxy.Blackhole()
	const reads = 50
	for i := 0; i < reads; i++ {
		if got := mustGet(t, c, "k", s); got.ID != 1 {
			t.Fatal("wrong value")
		}
	}
	st := c.Stats()
	// At most breakerThreshold reads wait for RedisTimeout (background epoch
	// and server checks fail too, and count); every other read skips Redis
	// at once, because the breaker opened or because the server's identity
	// could not be verified lately, whichever comes first.
	if st.BreakerTrips > 1 || st.RedisSkips < reads-breakerThreshold {
		t.Fatalf("want at most %d reads to wait for Redis before it is marked down: %+v", breakerThreshold, st)
	}
	proxy.Restore()
}

// TestTombstonesCrossEpochs: a writer that has not yet learnt of an epoch
// bump still rejects the stale fill of a reader that has. Tombstones apply
// in every epoch; only values and not-founds are epoch-scoped.
func TestTombstonesCrossEpochs(t *testing.T) {
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	mk := func() *Cache {
		o := Options{Redis: rdb, Namespace: ns, L1MaxBytes: -1, EpochInterval: time.Hour}
		generousTimeouts(&o)
		c, err := New(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	writer, reader := mk(), mk()
	ctx := context.Background()
	if _, err := reader.refreshEpoch(ctx, true); err != nil { // the reader bumps; the writer lags
		t.Fatal(err)
	}
	if writer.Stats().Epoch == reader.Stats().Epoch {
		t.Fatal("epochs did not diverge")
	}
	key := t.Name()
	s := newSource()
	s.put(key, sampleRow(1, 1))
	defer failpoint.Set(failpoint.AfterLoad, key, once(func(ctx context.Context, key string) {
		s.put(key, sampleRow(1, 2))
		writer.Invalidate(ctx, key, 2)
	}))()
	mustGet(t, reader, key, s)
	if got := mustGet(t, reader, key, s); got.Version != 2 {
		t.Fatalf("stale fill landed across epochs: version %d", got.Version)
	}
}

// TestOldEpochEntriesIgnored: after an epoch bump (an invalidation was lost),
// values loaded before it are not served.
func TestOldEpochEntriesIgnored(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, noL1)
	ctx := context.Background()
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, c, "k", s)
	s.put("k", sampleRow(1, 2)) // its invalidation never reached Redis
	if _, err := c.refreshEpoch(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, c, "k", s); got.Version != 2 {
		t.Fatalf("served an entry from before the epoch bump: version %d", got.Version)
	}
	if got := mustGet(t, c, "k", s); got.Version != 2 || c.Stats().L2Hits != 1 {
		t.Fatalf("refill under the new epoch not served: %+v", c.Stats())
	}
}

func TestPeek(t *testing.T) {
	t.Parallel()
	c, rdb := newCache(t, nil)
	ctx := context.Background()
	s := newSource()
	s.put("k", sampleRow(1, 3))
	if l1, l2, err := c.Peek(ctx, "k"); err != nil || l1.Present || l2.Present {
		t.Fatalf("empty: %+v %+v %v", l1, l2, err)
	}
	mustGet(t, c, "k", s)
	l1, l2, err := c.Peek(ctx, "k")
	if err != nil || l1.Kind != KindValue || l1.Version != 3 || l2.Kind != KindValue || l2.Version != 3 || l2.Stale {
		t.Fatalf("after a read: %+v %+v %v", l1, l2, err)
	}
	c.Invalidate(ctx, "k", 4)
	l1, l2, _ = c.Peek(ctx, "k")
	if l1.Present || l2.Kind != KindTombstone || l2.Version != 4 {
		t.Fatalf("after invalidate: %+v %+v", l1, l2)
	}
	rdb.Set(ctx, c.l2.key("k"), "junk", 0)
	if _, l2, _ = c.Peek(ctx, "k"); !l2.Corrupt {
		t.Fatalf("junk: %+v", l2)
	}
	if st := c.Stats(); st.DecodeErrors != 0 {
		t.Fatalf("Peek counted: %+v", st)
	}
}

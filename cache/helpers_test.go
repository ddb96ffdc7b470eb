package cache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/testenv"
)

// row is a ~300-byte cached value, shaped like a typical GORM model.
type row struct {
	ID        int64     `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Bio       string    `json:"bio"`
	Tags      []string  `json:"tags"`
	Score     float64   `json:"score"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   uint64    `json:"version"`
}

func sampleRow(id int64, version uint64) row {
	t := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return row{
		ID: id, Email: fmt.Sprintf("user%d@example.com", id), Name: "Ada Lovelace",
		Bio:  "Mathematician and writer, chiefly known for her work on the Analytical Engine; the first to publish an algorithm.",
		Tags: []string{"math", "engines"}, Score: 97.5, Active: true,
		CreatedAt: t, UpdatedAt: t.Add(time.Duration(version) * time.Minute), Version: version,
	}
}

// fakeSource is an in-memory source of truth with versioned rows.
type fakeSource struct {
	mu    sync.Mutex // protects rows
	rows  map[string]row
	calls atomic.Int64
}

func newSource() *fakeSource { return &fakeSource{rows: map[string]row{}} }

func (s *fakeSource) put(key string, r row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[key] = r
}

func (s *fakeSource) del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rows, key)
}

func (s *fakeSource) load(_ context.Context, key string) (row, uint64, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[key]
	if !ok {
		return row{}, 0, ErrNotFound
	}
	return r, r.Version, nil
}

func (s *fakeSource) loadMany(_ context.Context, keys []string) (map[string]Versioned[row], error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Versioned[row]{}
	for _, k := range keys {
		if r, ok := s.rows[k]; ok {
			out[k] = Versioned[row]{Value: r, Version: r.Version}
		}
	}
	return out, nil
}

// fakeClock is a Clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newCache returns a Cache on the shared test Redis with a unique namespace,
// closed when t ends. mod adjusts the options.
func newCache(t testing.TB, mod func(*Options)) (*Cache, *redis.Client) {
	t.Helper()
	rdb := testenv.Redis(t)
	o := Options{Redis: rdb, Namespace: testenv.Namespace(t, rdb)}
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

// singleInstance declares the cache the only one on its namespace, for
// tests of one cache that count L1 hits or rely on L1TTL: without it, a
// cache with Redis and no invalidation source keeps L1 entries only
// DefaultStalenessBound, which a loaded test machine can outlast between
// two reads.
func singleInstance(o *Options) { o.SingleInstance = true }

// generousTimeouts is for tests of what Redis holds, not of how the cache
// copes with a slow Redis: on a loaded machine a call can take longer than
// the default RedisTimeout (100 ms), or an invalidation than WriteTimeout
// (1 s), and the test would then fail on the scheduler, not on the cache.
func generousTimeouts(o *Options) {
	o.RedisTimeout, o.WriteTimeout = 2*time.Second, 5*time.Second
}

func mustGet(t testing.TB, c *Cache, key string, s *fakeSource, opts ...ReadOption) row {
	t.Helper()
	v, err := Get(context.Background(), c, key, s.load, opts...)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	c.Settle() // tests inspect Redis after reads: let background fills land
	return v
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

func reflectTypeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

// switchingClient returns a client whose every new connection dials the
// server last passed to its switch (first), closed when t ends; mod may
// adjust its options (pool size). It lets a test move a client between
// servers as a failover or a split does.
func switchingClient(t testing.TB, first *testenv.RedisServer, mod func(*redis.Options)) (*redis.Client, func(*testenv.RedisServer)) {
	var target atomic.Pointer[string]
	to := func(s *testenv.RedisServer) {
		addr := s.Addr()
		target.Store(&addr)
	}
	to(first)
	o := &redis.Options{Addr: "switch", ContextTimeoutEnabled: true, MaxRetries: -1,
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, *target.Load())
		}}
	if mod != nil {
		mod(o)
	}
	rdb := redis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	return rdb, to
}

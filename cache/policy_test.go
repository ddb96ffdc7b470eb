package cache

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/testenv"
)

// records is a slog.Handler that keeps the records it is given.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

// warnings counts the warnings that carry the namespace attribute ns.
func (h *records) warnings(ns string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		r.Attrs(func(a slog.Attr) bool {
			if r.Level == slog.LevelWarn && a.Key == "namespace" && a.Value.String() == ns {
				n++
			}
			return true
		})
	}
	return n
}

// TestEvictingPolicyReported: a Redis that evicts keys under memory
// pressure costs misses, never stale rows (leases and tombstones fail
// closed), but it is a setting to fix: New reports the policy in Stats and
// logs one warning, however often the server is checked again.
func TestEvictingPolicyReported(t *testing.T) {
	for _, policy := range []string{"noeviction", "allkeys-lru"} {
		t.Run(policy, func(t *testing.T) {
			srv := testenv.StartRedis(t, "--maxmemory", "64mb", "--maxmemory-policy", policy)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
			defer rdb.Close()
			logs := &records{}
			ns := testenv.Name(t)
			c, err := New(context.Background(), Options{Redis: rdb, Namespace: ns, Logger: slog.New(logs)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The first check may time out on a server that just started;
			// the watcher checks again every ServerCheckInterval.
			testenv.WaitFor(5*time.Second, func() bool { return c.Stats().MaxmemoryPolicy != "" })
			if got := c.Stats().MaxmemoryPolicy; got != policy {
				t.Fatalf("Stats.MaxmemoryPolicy = %q, want %q", got, policy)
			}
			for range 3 { // later checks (and a new incarnation) do not repeat it
				c.checkPolicy(context.Background())
			}
			want := 0
			if policy != "noeviction" {
				want = 1
			}
			if got := logs.warnings(ns); got != want {
				t.Fatalf("%d warning(s) logged for maxmemory-policy %s, want %d", got, policy, want)
			}
		})
	}
}

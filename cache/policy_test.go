package cache

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/testenv"
)

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
			logs := &testenv.LogRecorder{}
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
			if got := len(logs.Matching(slog.LevelWarn, map[string]string{"namespace": ns})); got != want {
				t.Fatalf("%d warning(s) logged for maxmemory-policy %s, want %d", got, policy, want)
			}
		})
	}
}

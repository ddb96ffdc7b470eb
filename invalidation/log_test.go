package invalidation

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
)

// TestLogsHealthTransitions checks that a silent subscription is logged
// once as a warning with its reason, and the recovery once as info, with
// nothing logged per read.
func TestLogsHealthTransitions(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewProxy(t, testenv.RedisAddr(t))
	direct := testenv.Redis(t)
	subRdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer subRdb.Close()
	ns := testenv.Namespace(t, direct)
	c, err := cache.New(context.Background(), cache.Options{Redis: direct, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := &testenv.LogRecorder{}
	b, err := New(context.Background(), c, Options{Redis: subRdb, Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	s := newStore()
	in := instance{c: c, bus: b}
	s.bump("k")
	for range 100 {
		in.read(t, s, "k")
	}
	if n := len(h.Matching(slog.LevelInfo, map[string]string{"namespace": ns, "subscriptions": "1"})); n != 1 {
		t.Fatalf("%d subscription records, want 1: %v", n, h.Records())
	}
	before := len(h.Records())
	proxy.Blackhole()
	testenv.Eventually(t, 5*time.Second, func() bool {
		return len(h.Matching(slog.LevelWarn, map[string]string{"namespace": ns, "reason": reasonSilent})) > 0
	}, "no warning for the silent subscription: %v", h.Records())
	time.Sleep(3 * DefaultHealthWindow) // still silent: no more warnings
	if n := len(h.Matching(slog.LevelWarn, map[string]string{"reason": ""})); n != 1 {
		t.Fatalf("%d unhealthy warnings during one outage, want 1", n)
	}
	proxy.Restore()
	testenv.Eventually(t, 10*time.Second, func() bool {
		return len(h.Matching(slog.LevelInfo, map[string]string{"namespace": ns, "subscriptions": ""})) >= 2 &&
			b.Healthy()
	}, "no resubscription logged: %v", h.Records())
	for _, r := range h.Records()[before:] {
		if r.Level > slog.LevelWarn {
			t.Errorf("record above warning: %v", r)
		}
	}
	if n := len(h.Matching(slog.LevelInfo, map[string]string{"instance": b.InstanceID()})); n < 3 { // subscribed, resubscribed, healthy (x2)
		t.Errorf("%d info records, want at least 3: %v", n, h.Records())
	}
}

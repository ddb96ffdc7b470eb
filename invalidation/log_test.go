package invalidation

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
)

// records is a slog.Handler that keeps every record, for tests.
type records struct {
	mu   sync.Mutex // protects recs
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

// matching returns the records at level whose attributes include every key
// of attrs with that value ("" matches any value).
func (h *records) matching(level slog.Level, attrs map[string]string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if r.Level != level {
			continue
		}
		got := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { got[a.Key] = a.Value.String(); return true })
		ok := true
		for k, v := range attrs {
			if g, has := got[k]; !has || v != "" && g != v {
				ok = false
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

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
	h := &records{}
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
	if n := len(h.matching(slog.LevelInfo, map[string]string{"namespace": ns, "subscriptions": "1"})); n != 1 {
		t.Fatalf("%d subscription records, want 1: %v", n, h.recs)
	}
	before := len(h.recs)
	proxy.Blackhole()
	testenv.Eventually(t, 5*time.Second, func() bool {
		return len(h.matching(slog.LevelWarn, map[string]string{"namespace": ns, "reason": reasonSilent})) > 0
	}, "no warning for the silent subscription: %v", h.recs)
	time.Sleep(3 * DefaultHealthWindow) // still silent: no more warnings
	if n := len(h.matching(slog.LevelWarn, map[string]string{"reason": ""})); n != 1 {
		t.Fatalf("%d unhealthy warnings during one outage, want 1", n)
	}
	proxy.Restore()
	testenv.Eventually(t, 10*time.Second, func() bool {
		return len(h.matching(slog.LevelInfo, map[string]string{"namespace": ns, "subscriptions": ""})) >= 2 &&
			b.Healthy()
	}, "no resubscription logged: %v", h.recs)
	for _, r := range h.recs[before:] {
		if r.Level > slog.LevelWarn {
			t.Errorf("record above warning: %v", r)
		}
	}
	if n := len(h.matching(slog.LevelInfo, map[string]string{"instance": b.InstanceID()})); n < 3 { // subscribed, resubscribed, healthy (x2)
		t.Errorf("%d info records, want at least 3: %v", n, h.recs)
	}
}

package invalidation

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
)

// BenchmarkPropagation measures the time from the moment a write's commit
// returns (just before Invalidate) to the moment another instance has
// evicted the key from its L1, one write at a time. Run it with at least
// 10000 writes:
//
//	go test -run '^$' -bench Propagation -benchtime 10000x ./invalidation/
//
// It reports the p50 and p99 of that latency (µs) next to ns/op.
func BenchmarkPropagation(b *testing.B) {
	type applied struct {
		key string
		at  time.Time
	}
	got := make(chan applied, 1024)
	cl := newCluster(b, testenv.RedisAddr(b), 2, func(_ *cache.Options, o *Options) {
		o.OnApply = func(e Event, _ time.Duration) {
			now := time.Now()
			for _, k := range e.Keys {
				got <- applied{k.Key, now}
			}
		}
	})
	writer := cl.ins[0].c
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := "p:" + strconv.Itoa(i%1000)
		start := time.Now()
		if err := writer.Invalidate(ctx, key, uint64(i+1)); err != nil {
			b.Fatal(err)
		}
		select {
		case a := <-got:
			if a.key != key {
				b.Fatalf("applied %s, want %s", a.key, key)
			}
			lat = append(lat, a.at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatal("event not applied within 10s")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

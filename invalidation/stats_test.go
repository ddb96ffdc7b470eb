package invalidation

import (
	"testing"
	"time"
)

func TestLagBuckets(t *testing.T) {
	var h bucketed
	for _, d := range []time.Duration{-time.Millisecond, 50 * time.Microsecond, time.Millisecond, 3 * time.Millisecond, 20 * time.Second} {
		h.record(d)
	}
	cum, n, sum := h.snapshot()
	bounds := LagBucketBounds()
	if len(cum) != len(bounds) || n != 5 || sum != 20*time.Second+4*time.Millisecond+50*time.Microsecond {
		t.Fatalf("count %d sum %v buckets %v", n, sum, cum)
	}
	for i, b := range bounds {
		want := uint64(0)
		switch {
		case b >= 0.005:
			want = 4
		case b >= 0.001:
			want = 3
		case b >= 0.0001:
			want = 2
		}
		if cum[i] != want {
			t.Errorf("bucket le=%v: %d, want %d", b, cum[i], want)
		}
	}
	bounds[0] = 42
	if LagBucketBounds()[0] == 42 {
		t.Error("LagBucketBounds returned its own array")
	}
}

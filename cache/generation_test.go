package cache

import (
	"context"
	"testing"
)

// TestGeneration: a generation is 0 until its key is invalidated, then the
// invalidation's stamp, read from L1 after the first read, and it moves
// with every invalidation, on the writer at once and in Redis for others.
func TestGeneration(t *testing.T) {
	t.Parallel()
	w, rdb := newCache(t, nil)
	ns := w.Namespace()
	r, err := New(context.Background(), Options{Redis: rdb, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	// The test is the invalidation source of both caches: it applies the
	// writer's invalidation to r by hand, as the bus would.
	w.SetLocalServing(true)
	r.SetLocalServing(true)
	ctx := context.Background()
	gen := func(c *Cache) uint64 {
		t.Helper()
		g, err := c.Generation(ctx, "users:=gen")
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := gen(w); g != 0 {
		t.Fatalf("generation before any invalidation: %d", g)
	}
	if err := w.Invalidate(ctx, "users:=gen", 0); err != nil {
		t.Fatal(err)
	}
	g1 := gen(w)
	if g1 == 0 || gen(r) != g1 {
		t.Fatalf("after an invalidation: writer %d, other %d", g1, gen(r))
	}
	hits := w.Stats().L1Hits
	if gen(w) != g1 || w.Stats().L1Hits != hits+1 {
		t.Fatal("a second read is not an L1 hit")
	}
	if err := w.Invalidate(ctx, "users:=gen", 0); err != nil {
		t.Fatal(err)
	}
	r.EvictLocal("users:=gen", 0) // what the bus does for the writer's event
	if g2 := gen(w); g2 <= g1 || gen(r) != g2 {
		t.Fatalf("after a second invalidation: writer %d (was %d), other %d", g2, g1, gen(r))
	}
}

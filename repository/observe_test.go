package repository

import (
	"context"
	"sync"
	"testing"

	"github.com/gormcache/gormcache/cache"
)

// TestObserveTier checks that Observe events say which tier served a read.
func TestObserveTier(t *testing.T) {
	// One cache on its namespace: L1 entries live L1TTL, so the L1 steps
	// are L1 hits however slowly the machine runs.
	e := newEnv(t, func(o *cache.Options) { o.SingleInstance = true })
	var mu sync.Mutex
	var events []Event
	r, err := New[account, int64](e.db, e.c, Options{Observe: func(_ context.Context, ev Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := &account{Email: "a@x", Name: "A"}, &account{Email: "b@x", Name: "B"}
	mustCreate(t, r, a)
	mustCreate(t, r, b)
	last := func() Event {
		mu.Lock()
		defer mu.Unlock()
		return events[len(events)-1]
	}
	if ev := last(); ev.Op != "create" || ev.Tier != TierNone {
		t.Fatalf("create: %+v", ev)
	}
	steps := []struct {
		read   func() error
		tier   Tier
		served cache.Served
	}{
		{func() error { _, err := r.Get(ctx, a.ID); return err }, TierDB, cache.Served{Loaded: 1}},
		{func() error { e.c.Settle(); _, err := r.Get(ctx, a.ID); return err }, TierL1, cache.Served{L1: 1}},
		{func() error { e.c.FlushLocal(); _, err := r.Get(ctx, a.ID); return err }, TierL2, cache.Served{L2: 1}},
		{func() error { _, err := r.GetMany(ctx, []int64{a.ID, b.ID, a.ID}); return err }, TierMixed, cache.Served{L1: 1, Loaded: 1}},
		{func() error { _, err := r.GetMany(ctx, []int64{a.ID, b.ID}); return err }, TierL1, cache.Served{L1: 2}},
		{func() error { _, err := r.GetBy(ctx, "email", "b@x"); return err }, TierL1, cache.Served{L1: 1}},
	}
	for i, st := range steps {
		if err := st.read(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if ev := last(); ev.Tier != st.tier || ev.Served != st.served {
			t.Errorf("step %d (%s): tier %q served %+v, want %q %+v", i, ev.Op, ev.Tier, ev.Served, st.tier, st.served)
		}
	}
}

func TestTierOf(t *testing.T) {
	for s, want := range map[cache.Served]Tier{
		{}: TierNone, {L1: 2}: TierL1, {L2: 1}: TierL2, {Loaded: 3}: TierDB, {L1: 1, L2: 1}: TierMixed, {L2: 1, Loaded: 1}: TierMixed,
	} {
		if got := TierOf(s); got != want {
			t.Errorf("TierOf(%+v) = %q, want %q", s, got, want)
		}
	}
}

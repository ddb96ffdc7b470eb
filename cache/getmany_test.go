package cache

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gormcache/gormcache/internal/failpoint"
)

func TestGetManyTiers(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, singleInstance)
	ctx := context.Background()
	s := newSource()
	var keys []string
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("m:%d", i)
		keys = append(keys, k)
		if i%5 != 4 { // m:4 and m:9 do not exist
			s.put(k, sampleRow(int64(i), 1))
		}
	}
	mustGet(t, c, "m:0", s) // L1 + L2
	mustGet(t, c, "m:1", s)
	c.FlushLocal() // m:0, m:1 in L2 only
	mustGet(t, c, "m:2", s)
	calls := s.calls.Load()

	got, err := GetMany(ctx, c, append(keys, "m:3"), s.loadMany) // with a duplicate
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("got %d values, want 8", len(got))
	}
	for k, v := range got {
		if fmt.Sprintf("m:%d", v.ID) != k {
			t.Fatalf("%s -> %+v", k, v)
		}
	}
	if s.calls.Load() != calls+1 {
		t.Fatalf("loader calls = %d, want one batch", s.calls.Load()-calls)
	}
	st := c.Stats()
	if st.L2Hits != 2 || st.L1Hits != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Everything, including the two not-found keys, is cached now.
	got, err = GetMany(ctx, c, keys, s.loadMany)
	if err != nil || len(got) != 8 || s.calls.Load() != calls+1 {
		t.Fatalf("second batch: %v, %d values, %d loader calls", err, len(got), s.calls.Load()-calls)
	}
}

func TestGetManyLoaderFailure(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	boom := errors.New("boom")
	_, err := GetMany(context.Background(), c, []string{"a", "b"}, func(context.Context, []string) (map[string]Versioned[row], error) {
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	_, err = GetMany(context.Background(), c, []string{"a"}, func(context.Context, []string) (map[string]Versioned[row], error) {
		panic("bug")
	})
	if !errors.Is(err, ErrLoaderPanic) {
		t.Fatalf("panic: err = %v", err)
	}
}

// TestGetManyStaleFill is race 1 for batches: a key invalidated while the
// batch loads is not filled with the old version, in either tier.
func TestGetManyStaleFill(t *testing.T) {
	c, _ := newCache(t, nil)
	ctx := context.Background()
	s := newSource()
	keys := []string{t.Name() + ":a", t.Name() + ":b"}
	for _, k := range keys {
		s.put(k, sampleRow(1, 1))
	}
	defer failpoint.Set(failpoint.AfterLoad, keys[0], once(func(ctx context.Context, _ string) {
		s.put(keys[1], sampleRow(1, 2))
		c.Invalidate(ctx, keys[1], 2)
	}))()
	if _, err := GetMany(ctx, c, keys, s.loadMany); err != nil {
		t.Fatal(err)
	}
	got, err := GetMany(ctx, c, keys, s.loadMany)
	if err != nil || got[keys[1]].Version != 2 {
		t.Fatalf("stale batch fill: %v %+v", err, got[keys[1]])
	}
	if c.Stats().RejectedFills == 0 {
		t.Fatal("no fill rejected")
	}
}

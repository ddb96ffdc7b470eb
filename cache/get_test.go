package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormcache/gormcache/internal/failpoint"
)

func TestGetTiers(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, singleInstance)
	s := newSource()
	s.put("u:1", sampleRow(1, 3))

	if got := mustGet(t, c, "u:1", s); got.Version != 3 || got.Email != "user1@example.com" {
		t.Fatalf("first read = %+v", got)
	}
	st := c.Stats()
	if st.Misses != 1 || st.Loads != 1 || st.L1Hits != 0 {
		t.Fatalf("after miss: %+v", st)
	}
	mustGet(t, c, "u:1", s)
	if st := c.Stats(); st.L1Hits != 1 || st.Loads != 1 {
		t.Fatalf("after L1 hit: %+v", st)
	}
	// L1 flushed: served by Redis, then L1 again.
	c.FlushLocal()
	mustGet(t, c, "u:1", s)
	mustGet(t, c, "u:1", s)
	if st := c.Stats(); st.L2Hits != 1 || st.L1Hits != 2 || st.Loads != 1 || s.calls.Load() != 1 {
		t.Fatalf("after L2 hit: %+v, loader calls %d", st, s.calls.Load())
	}
}

func TestGetWithoutRedis(t *testing.T) {
	t.Parallel()
	c, err := New(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, c, "k", s)
	mustGet(t, c, "k", s)
	if s.calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1", s.calls.Load())
	}
	s.put("k", sampleRow(1, 2))
	if err := c.Invalidate(context.Background(), "k", 2); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, c, "k", s); got.Version != 2 {
		t.Fatalf("after invalidate: version %d", got.Version)
	}
}

func TestNotFoundCached(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, singleInstance)
	s := newSource()
	for i := 0; i < 3; i++ {
		if _, err := Get(context.Background(), c, "none", s.load); !isNotFound(err) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	}
	if s.calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1 (not-found cached)", s.calls.Load())
	}
	if st := c.Stats(); st.NotFoundHits != 2 {
		t.Fatalf("NotFoundHits = %d", st.NotFoundHits)
	}
	// An insert invalidates at version 1 and is visible at once.
	s.put("none", sampleRow(9, 1))
	c.Invalidate(context.Background(), "none", 1)
	if got := mustGet(t, c, "none", s); got.ID != 9 {
		t.Fatalf("after insert: %+v", got)
	}
}

func TestReturnedValuesAreCopies(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	s := newSource()
	s.put("k", sampleRow(1, 1))
	a := mustGet(t, c, "k", s)
	a.Tags[0] = "mutated"
	a.Name = "mutated"
	b := mustGet(t, c, "k", s)
	if b.Tags[0] != "math" || b.Name != "Ada Lovelace" {
		t.Fatalf("cache changed by caller's mutation: %+v", b)
	}
}

func TestLoaderErrorNotCached(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	boom := errors.New("db down")
	calls := 0
	load := func(ctx context.Context, key string) (row, uint64, error) {
		calls++
		if calls == 1 {
			return row{}, 0, boom
		}
		return sampleRow(1, 1), 1, nil
	}
	if _, err := Get(context.Background(), c, "k", load); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the loader's", err)
	}
	if _, err := Get(context.Background(), c, "k", load); err != nil {
		t.Fatalf("second read: %v (error was cached?)", err)
	}
	if st := c.Stats(); st.LoadErrors != 1 {
		t.Fatalf("LoadErrors = %d", st.LoadErrors)
	}
}

func TestLoaderPanicReachesEveryWaiter(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	release := make(chan struct{})
	entered := make(chan struct{})
	load := func(ctx context.Context, key string) (row, uint64, error) {
		close(entered)
		<-release
		panic("loader bug")
	}
	const n = 8
	key := t.Name()
	waiting := countWaiters(t, key)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background()) // DoChan path
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); _, errs[0] = Get(ctx, c, key, load) }()
	<-entered
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = Get(ctx, c, key, load) }()
	}
	waitFor(t, func() bool { return waiting.Load() == n })
	close(release)
	wg.Wait()
	for i, err := range errs {
		var pe *PanicError
		if !errors.Is(err, ErrLoaderPanic) || !errors.As(err, &pe) || pe.Value != "loader bug" {
			t.Fatalf("waiter %d: err = %v", i, err)
		}
	}
	// The flight is not stuck: a later read loads again.
	v, err := Get(context.Background(), c, key, func(ctx context.Context, key string) (row, uint64, error) {
		return sampleRow(2, 1), 1, nil
	})
	if err != nil || v.ID != 2 {
		t.Fatalf("after panic: %v %+v", err, v)
	}
}

func TestWaiterGivesUpWithoutCancellingLoad(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	release := make(chan struct{})
	entered := make(chan struct{})
	var loadCtxErr error
	load := func(ctx context.Context, key string) (row, uint64, error) {
		close(entered)
		<-release
		loadCtxErr = ctx.Err()
		return sampleRow(1, 1), 1, nil
	}
	key := t.Name()
	waiting := countWaiters(t, key)
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { _, err := Get(ctx1, c, key, load); done1 <- err }()
	<-entered
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done2 := make(chan error, 1)
	go func() { _, err := Get(ctx2, c, key, load); done2 <- err }()
	waitFor(t, func() bool { return waiting.Load() == 2 })
	cancel1() // the leader gives up
	if err := <-done1; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: err = %v", err)
	}
	close(release)
	if err := <-done2; err != nil {
		t.Fatalf("other waiter: %v", err)
	}
	if loadCtxErr != nil {
		t.Fatalf("load saw its context cancelled: %v", loadCtxErr)
	}
}

func TestSingleflightOneLoadPerStorm(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	s := newSource()
	key := t.Name()
	waiting := countWaiters(t, key)
	s.put(key, sampleRow(1, 1))
	release := make(chan struct{})
	load := func(ctx context.Context, key string) (row, uint64, error) {
		<-release
		return s.load(ctx, key)
	}
	const n = 200
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Get(ctx, c, key, load); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, func() bool { return waiting.Load() == n })
	close(release)
	wg.Wait()
	if s.calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1", s.calls.Load())
	}
	if st := c.Stats(); st.Coalesce != n-1 {
		t.Fatalf("Coalesce = %d, want %d", st.Coalesce, n-1)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	s := newSource()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"empty key", func() error { _, err := Get(ctx, c, "", s.load); return err }, ErrInvalidKey},
		{"long key", func() error { _, err := Get(ctx, c, strings.Repeat("k", MaxKeyLen+1), s.load); return err }, ErrInvalidKey},
		{"brace key", func() error { _, err := Get(ctx, c, "a{b}", s.load); return err }, ErrInvalidKey},
		{"nil loader", func() error { _, err := Get[row](ctx, c, "k", nil); return err }, ErrNilLoader},
		{"nil cache", func() error { _, err := Get(ctx, nil, "k", s.load); return err }, ErrNilCache},
		{"nil cache many", func() error { _, err := GetMany(ctx, nil, []string{"k"}, s.loadMany); return err }, ErrNilCache},
		{"nil loader many", func() error { _, err := GetMany[row](ctx, c, []string{"k"}, nil); return err }, ErrNilLoader},
		{"bad key many", func() error { _, err := GetMany(ctx, c, []string{"k", ""}, s.loadMany); return err }, ErrInvalidKey},
		{"invalidate empty key", func() error { return c.Invalidate(ctx, "", 1) }, ErrInvalidKey},
		{"invalidate huge version", func() error { return c.Invalidate(ctx, "k", 1<<60) }, ErrInvalidVersion},
		{"invalidate nil cache", func() error { var n *Cache; return n.Invalidate(ctx, "k", 1) }, ErrNilCache},
		{"unencodable type", func() error {
			_, err := Get(ctx, c, "ch", func(context.Context, string) (chan int, uint64, error) { return make(chan int), 1, nil })
			return err
		}, ErrUnsupportedType},
		{"unencodable value", func() error { // a cycle: the type is fine, this value is not
			type node struct{ Next *node }
			_, err := Get(ctx, c, "cyc", func(context.Context, string) (node, uint64, error) { n := &node{}; n.Next = n; return *n, 1, nil })
			return err
		}, ErrEncode},
	} {
		if err := tc.call(); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	//lint:ignore SA1012 a nil context is bad input this test feeds on purpose
	if _, err := Get(nil, c, "nilctx", s.load); !isNotFound(err) { //nolint:staticcheck
		t.Errorf("nil context: err = %v", err)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s := newSource()
	if _, err := Get(context.Background(), c, "k", s.load); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := c.Invalidate(context.Background(), "k", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Invalidate after Close: %v", err)
	}
}

func TestOversizeValueSkipsL1(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, func(o *Options) { o.L1MaxEntryBytes = 1024 })
	big := sampleRow(1, 1)
	big.Bio = strings.Repeat("x", 4096)
	s := newSource()
	s.put("big", big)
	mustGet(t, c, "big", s)
	got := mustGet(t, c, "big", s)
	if got.Bio != big.Bio {
		t.Fatal("wrong value")
	}
	st := c.Stats()
	if st.L1Skips == 0 || st.L1Hits != 0 || st.L2Hits != 1 || s.calls.Load() != 1 {
		t.Fatalf("oversize value: %+v, loader calls %d", st, s.calls.Load())
	}
}

func TestWithTTLAndSkipL1(t *testing.T) {
	t.Parallel()
	c, rdb := newCache(t, nil)
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, c, "k", s, WithTTL(5*time.Second), SkipL1())
	if c.Stats().L1Entries != 0 {
		t.Fatal("SkipL1 filled L1")
	}
	ttl, err := rdb.PTTL(context.Background(), c.l2.key("k")).Result()
	if err != nil || ttl <= 0 || ttl > 5*time.Second {
		t.Fatalf("PTTL = %v, %v; want within 5s", ttl, err)
	}
}

// countWaiters counts the callers that start or join a flight for key.
func countWaiters(t *testing.T, key string) *atomic.Int64 {
	var n atomic.Int64
	t.Cleanup(failpoint.Set(failpoint.Waiting, key, func(context.Context, string) { n.Add(1) }))
	return &n
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSlowLoadIsNotFilled: a load that outlives LoadTimeout is returned but
// not cached, since the tombstone that would reject it may have expired.
func TestSlowLoadIsNotFilled(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	c, _ := newCache(t, func(o *Options) { o.Clock = clk })
	calls := 0
	load := func(context.Context, string) (row, uint64, error) {
		calls++
		clk.Advance(c.opts.LoadTimeout + time.Second)
		return sampleRow(1, 1), 1, nil
	}
	for i := 0; i < 2; i++ {
		if _, err := Get(context.Background(), c, "slow", load); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 2 {
		t.Fatalf("loader calls = %d: a slow load was cached", calls)
	}
}

// TestHungLoadIsAbandoned: callers arriving after LoadTimeout do not join a
// load that never returns; they start their own.
func TestHungLoadIsAbandoned(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, func(o *Options) { o.LoadTimeout = 20 * time.Millisecond; o.TombstoneTTL = time.Second })
	key := t.Name()
	hang := make(chan struct{})
	defer close(hang)
	abandoned := make(chan struct{})
	defer failpoint.Set(failpoint.Abandoned, key, once(func(context.Context, string) { close(abandoned) }))()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Get(ctx, c, key, func(context.Context, string) (row, uint64, error) {
		<-hang // the first load never returns (until the test ends)
		return row{}, 0, nil
	})
	<-abandoned
	got, err := Get(context.Background(), c, key, func(context.Context, string) (row, uint64, error) { return sampleRow(1, 2), 2, nil })
	if err != nil || got.Version != 2 {
		t.Fatalf("second caller: %v %+v", err, got)
	}
}

// TestStormWithoutL1 is a miss storm on a cache without L1: callers that
// arrive after the load returned find the entry in Redis (its fill is not
// deferred when L1 cannot hold the entry), so the storm costs one load.
func TestStormWithoutL1(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, noL1)
	s := newSource()
	s.put("k", sampleRow(1, 1))
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Get(context.Background(), c, "k", s.load); err != nil {
				t.Error(err)
			}
		}()
		if i == 25 {
			wg.Wait() // the second half arrives after the first load returned
		}
	}
	wg.Wait()
	if n := s.calls.Load(); n != 1 {
		t.Fatalf("%d loads for one key, want 1", n)
	}
}

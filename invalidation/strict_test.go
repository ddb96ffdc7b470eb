package invalidation

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/testenv"
)

// TestWaitApplied: with three live instances, WaitApplied returns once both
// others acknowledged, and by then both have evicted the key.
func TestWaitApplied(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, testenv.RedisAddr(t), 3, nil)
	time.Sleep(2 * DefaultPingInterval) // presence entries written
	s := newStore()
	s.bump("k")
	for _, in := range cl.ins {
		in.read(t, s, "k")
	}
	w := cl.ins[0]
	w.write(t, s, "k")
	if err := w.bus.WaitApplied(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, in := range cl.ins[1:] {
		if l1, _, _ := in.c.Peek(context.Background(), "k"); l1.Present {
			t.Fatalf("instance %d still holds the key in L1 after WaitApplied", i+1)
		}
	}
	if st := w.bus.Stats(); st.StrictAcked != 1 || st.StrictTimeouts != 0 {
		t.Fatalf("not acknowledged: %+v", st)
	}
	// Closed instances leave the presence hash: nobody waits for them.
	cl.ins[2].bus.Close()
	if err := w.bus.WaitApplied(context.Background()); err != nil || w.bus.Stats().StrictAcked != 2 {
		t.Fatalf("after an instance closed: %v %+v", err, w.bus.Stats())
	}
}

// TestWaitAppliedSilent: an instance listed as live that never answers (its
// entry written by hand) is waited for HealthWindow, no longer.
func TestWaitAppliedSilent(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, testenv.RedisAddr(t), 1, nil)
	w := cl.ins[0]
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer rdb.Close()
	ghost := func() {
		rdb.HSet(context.Background(), w.bus.presence, "ghost", strconv.FormatInt(time.Now().UnixNano(), 10))
	}
	ghost()
	start := time.Now()
	if err := w.bus.WaitApplied(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < DefaultHealthWindow {
		t.Fatalf("returned after %v, before HealthWindow, without the silent instance's acknowledgement", took)
	}
	if st := w.bus.Stats(); st.StrictTimeouts != 1 {
		t.Fatalf("%+v", st)
	}
	ghost()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.bus.WaitApplied(ctx); err == nil {
		t.Fatal("a cancelled context did not end the wait")
	}
	w.bus.Close()
	if err := w.bus.WaitApplied(context.Background()); err == nil {
		t.Fatal("WaitApplied on a closed bus")
	}
}

package cache

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/internal/testenv"
)

// TestCluster runs the cache on a real Redis Cluster (three primaries with
// a replica each): every key is its own hash tag, so scripts touch one slot
// and batches are split per node.
func TestCluster(t *testing.T) {
	rc := testenv.StartCluster(t)
	rdb := rc.NewClient(nil)
	ctx := context.Background()
	newOn := func(t *testing.T, ns string, mod func(*Options)) *Cache {
		t.Helper()
		if ns == "" {
			ns = testenv.Namespace(t, rdb)
		}
		o := Options{Redis: rdb, Namespace: ns}
		if mod != nil {
			mod(&o)
		}
		c, err := New(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetLocalServing(true) // one instance per namespace here (the lease test's two never use L1)
		return c
	}
	// ownerOf returns the primary holding k's Redis key.
	ownerOf := func(t *testing.T, c *Cache, k string) string {
		t.Helper()
		o, err := rc.Owner(ctx, testenv.Slot(c.l2.key(k)))
		if err != nil {
			t.Fatal(err)
		}
		return o
	}

	t.Run("reads", func(t *testing.T) {
		c := newOn(t, "", nil)
		s := newSource()
		s.put("u:1", sampleRow(1, 1))
		if v := mustGet(t, c, "u:1", s); v.Version != 1 {
			t.Fatalf("got %+v", v)
		}
		// The entry and nothing else is on the key's own primary.
		if n, err := rc.Admin(ownerOf(t, c, "u:1")).Exists(ctx, c.l2.key("u:1")).Result(); err != nil || n != 1 {
			t.Fatalf("entry not on its slot's primary: %v %v", n, err)
		}
		c.FlushLocal()
		before := c.Stats()
		if v := mustGet(t, c, "u:1", s); v.Version != 1 {
			t.Fatalf("got %+v", v)
		}
		if st := c.Stats(); st.L2Hits != before.L2Hits+1 || st.Loads != before.Loads {
			t.Fatalf("not an L2 hit: %+v", st)
		}
		if v := mustGet(t, c, "u:1", s); v.Version != 1 || c.Stats().L1Hits == before.L1Hits {
			t.Fatalf("not an L1 hit: %+v", c.Stats())
		}
		if st := c.Stats(); st.ServerIdentity == "" || st.Epoch == 0 {
			t.Fatalf("no identity or epoch on a cluster: %+v", st)
		}
	})

	t.Run("GetMany across slots", func(t *testing.T) {
		c := newOn(t, "", nil)
		s := newSource()
		var keys []string
		nodes := map[string]int{}
		for i := range 60 {
			k := fmt.Sprintf("m:%d", i)
			keys = append(keys, k)
			s.put(k, sampleRow(int64(i), 1))
			nodes[ownerOf(t, c, k)]++
		}
		if len(nodes) != 3 {
			t.Fatalf("keys on %d primaries, want 3: %v", len(nodes), nodes)
		}
		got, err := GetMany(ctx, c, keys, s.loadMany)
		if err != nil || len(got) != len(keys) || s.calls.Load() != 1 {
			t.Fatalf("cold batch: %v, %d values, %d loads", err, len(got), s.calls.Load())
		}
		c.Settle()
		c.FlushLocal()
		before := c.Stats().L2Hits
		got, err = GetMany(ctx, c, keys, s.loadMany)
		if err != nil || len(got) != len(keys) || s.calls.Load() != 1 {
			t.Fatalf("warm batch: %v, %d values, %d loads", err, len(got), s.calls.Load())
		}
		if n := c.Stats().L2Hits - before; n != uint64(len(keys)) {
			t.Fatalf("%d L2 hits, want %d", n, len(keys))
		}
		// One invalidation across every node, then fresh values everywhere.
		var invs []Invalidation
		for i, k := range keys {
			if i%3 == 0 {
				s.put(k, sampleRow(int64(i), 2))
				invs = append(invs, Invalidation{Key: k, Version: 2})
			}
		}
		if err := c.InvalidateMany(ctx, invs); err != nil {
			t.Fatal(err)
		}
		for _, inv := range invs {
			if _, l2, err := c.Peek(ctx, inv.Key); err != nil || l2.Kind != KindTombstone || l2.Version != 2 {
				t.Fatalf("%s in Redis: %+v %v, want a v2 tombstone", inv.Key, l2, err)
			}
		}
		got, err = GetMany(ctx, c, keys, s.loadMany)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			if want := uint64(1 + boolInt(i%3 == 0)); got[k].Version != want {
				t.Fatalf("%s: v%d, want v%d", k, got[k].Version, want)
			}
		}
	})

	t.Run("GetMany fill after invalidation", func(t *testing.T) {
		c := newOn(t, "", nil)
		s := newSource()
		keys := []string{"f:1", "f:2", "f:3", "f:4", "f:5", "f:6"}
		for i, k := range keys {
			s.put(k, sampleRow(int64(i), 1))
		}
		var once sync.Once
		load := func(ctx context.Context, ks []string) (map[string]Versioned[row], error) {
			old, err := s.loadMany(ctx, ks)
			once.Do(func() { // a write commits while the batch loads v1
				var invs []Invalidation
				for i, k := range keys {
					s.put(k, sampleRow(int64(i), 2))
					invs = append(invs, Invalidation{Key: k, Version: 2})
				}
				if err := c.InvalidateMany(ctx, invs); err != nil {
					t.Error(err)
				}
			})
			return old, err
		}
		if _, err := GetMany(ctx, c, keys, load); err != nil { // overlaps the write: may return v1
			t.Fatal(err)
		}
		c.Settle()
		got, err := GetMany(ctx, c, keys, load)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if got[k].Version != 2 {
				t.Fatalf("%s: v%d after the write was acknowledged", k, got[k].Version)
			}
		}
		if c.Stats().RejectedFills == 0 {
			t.Fatalf("no fill rejected: %+v", c.Stats())
		}
	})

	t.Run("races", func(t *testing.T) {
		for _, sc := range raceScenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Run("guarded", func(t *testing.T) {
					if sc.run(t, newOn(t, "", sc.opts), t.Name()) {
						t.Fatal("read the old version after the write was acknowledged")
					}
				})
				t.Run("guard off", func(t *testing.T) {
					for _, g := range sc.guards {
						defer failpoint.Disable(g)()
					}
					if !sc.run(t, newOn(t, "", sc.opts), t.Name()) {
						t.Fatalf("no stale read with %v switched off", sc.guards)
					}
				})
			})
		}
	})

	t.Run("epoch", func(t *testing.T) {
		c := newOn(t, "", nil)
		s := newSource()
		s.put("e:1", sampleRow(1, 1))
		mustGet(t, c, "e:1", s)
		epoch := c.Stats().Epoch
		if err := c.RetireAll(ctx); err != nil {
			t.Fatal(err)
		}
		if c.Stats().Epoch <= epoch {
			t.Fatalf("epoch %d after RetireAll, was %d", c.Stats().Epoch, epoch)
		}
		if _, l2, err := c.Peek(ctx, "e:1"); err != nil || !l2.Stale {
			t.Fatalf("the entry of the old epoch: %+v %v", l2, err)
		}
		loads := s.calls.Load()
		mustGet(t, c, "e:1", s)
		if s.calls.Load() != loads+1 {
			t.Fatal("an entry of the retired epoch was served")
		}
	})

	t.Run("lease", func(t *testing.T) {
		// Two instances of one namespace: a stampede costs one load, and an
		// invalidation during that load voids its lease.
		ns := testenv.Namespace(t, rdb)
		a := newOn(t, ns, func(o *Options) { o.LeaseWait = 5 * time.Second })
		b := newOn(t, ns, func(o *Options) { o.LeaseWait = 5 * time.Second })
		s := newSource()
		s.put("l:1", sampleRow(1, 1))
		entered, release := make(chan struct{}), make(chan struct{})
		var first sync.Once
		slow := func(ctx context.Context, key string) (row, uint64, error) {
			v, ver, err := s.load(ctx, key)
			first.Do(func() {
				close(entered)
				<-release
			})
			return v, ver, err
		}
		done := make(chan row, 2)
		go func() { v, _ := Get(ctx, a, "l:1", slow); done <- v }()
		<-entered // a holds the lease
		go func() { v, _ := Get(ctx, b, "l:1", s.load); done <- v }()
		testenv.Eventually(t, 5*time.Second, func() bool {
			_, err := rdb.Get(ctx, a.l2.leaseKey("l:1")).Result()
			return err == nil
		}, "no lease in Redis")
		close(release)
		for range 2 {
			if v := <-done; v.Version != 1 {
				t.Fatalf("got %+v", v)
			}
		}
		if n := s.calls.Load(); n != 1 {
			t.Fatalf("%d loads for a two-instance stampede, want 1", n)
		}

		// Now an invalidation on b while a loads v1: a's fill is refused.
		s.put("l:2", sampleRow(2, 1))
		slow2 := func(ctx context.Context, key string) (row, uint64, error) {
			v, ver, err := s.load(ctx, key)
			s.put(key, sampleRow(2, 2))
			if err := b.Invalidate(ctx, key, 2); err != nil {
				t.Error(err)
			}
			return v, ver, err
		}
		if _, err := Get(ctx, a, "l:2", slow2); err != nil {
			t.Fatal(err)
		}
		a.Settle()
		if _, l2, err := a.Peek(ctx, "l:2"); err != nil || l2.Kind != KindTombstone || l2.Version != 2 {
			t.Fatalf("l:2 in Redis after the refused fill: %+v %v", l2, err)
		}
		if v := mustGet(t, b, "l:2", s); v.Version != 2 {
			t.Fatalf("b read v%d", v.Version)
		}
	})

	t.Run("identity", func(t *testing.T) {
		// A failover changes the set of primaries: a new incarnation, a new
		// epoch, and nothing of the old one is served.
		c := newOn(t, "", nil)
		s := newSource()
		s.put("i:1", sampleRow(1, 1))
		mustGet(t, c, "i:1", s)
		st := c.Stats()
		if _, _, err := rc.Failover(testenv.Slot(c.l2.key("i:1")), 30*time.Second); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, func() bool {
			return c.Stats().Incarnations > st.Incarnations && c.Stats().Epoch > st.Epoch
		}, "no new incarnation after a failover: %+v", c.Stats())
		loads := s.calls.Load()
		mustGet(t, c, "i:1", s)
		if s.calls.Load() != loads+1 {
			t.Fatal("an entry of the old incarnation was served")
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

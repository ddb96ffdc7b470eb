package invalidation

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
)

// clusterSlack is what a read on a loaded 2-core machine may take beyond
// the bound B (HealthWindow) to see a write, as in the torture checker.
const clusterSlack = 250 * time.Millisecond

// newOnCluster starts n instances (cache and bus, each with its own
// cluster client) on the cluster cl, sharing a namespace.
func newOnCluster(t testing.TB, cl *testenv.Cluster, n int, mod func(*cache.Options, *Options)) *cluster {
	t.Helper()
	out := &cluster{t: t, ns: testenv.Name(t)}
	for i := range n {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), ContextTimeoutEnabled: true})
		co := cache.Options{Redis: rdb, Namespace: out.ns, RedisTimeout: 200 * time.Millisecond, RedisRetryAfter: 100 * time.Millisecond, EpochInterval: 100 * time.Millisecond}
		bo := Options{InstanceID: fmt.Sprintf("i%d", i)}
		if mod != nil {
			mod(&co, &bo)
		}
		c, err := cache.New(context.Background(), co)
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(context.Background(), c, bo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			b.Close()
			c.Close()
			rdb.Close()
		})
		out.ins = append(out.ins, instance{c, b})
	}
	for _, in := range out.ins {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := in.bus.WaitHealthy(ctx)
		cancel()
		if err != nil {
			t.Fatalf("bus not healthy on the cluster: %v", err)
		}
	}
	admin := cl.NewClient(nil)
	t.Cleanup(func() { testenv.DeletePrefix(admin, out.ns+":") })
	return out
}

// fresh reads key on in until it returns want, and fails t if a read that
// began more than B plus a slack after acked returns an older version.
func fresh(t testing.TB, in instance, s *store, key string, want uint64, acked time.Time) {
	t.Helper()
	bound := acked.Add(in.bus.opts.HealthWindow + clusterSlack)
	deadline := time.Now().Add(15 * time.Second)
	for {
		began := time.Now()
		v, err := cache.Get(context.Background(), in.c, key, s.load)
		if err == nil && v >= want {
			return
		}
		if err == nil && began.After(bound) {
			t.Fatalf("stale read of %s on %s: v%d, %v after v%d was acknowledged (bound %v)",
				key, in.bus.InstanceID(), v, began.Sub(acked).Round(time.Millisecond), want, bound.Sub(acked))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s: v%d (%v), never v%d", key, in.bus.InstanceID(), v, err, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// warm reads key on every instance until each serves it from L1.
func warm(t testing.TB, cl *cluster, s *store, key string) {
	t.Helper()
	for _, in := range cl.ins {
		testenv.Eventually(t, 15*time.Second, func() bool {
			before := in.c.Stats().L1Hits
			in.read(t, s, key)
			return in.c.Stats().L1Hits > before
		}, "%s never served %s from L1", in.bus.InstanceID(), key)
	}
}

func TestDerivedNames(t *testing.T) {
	for _, tc := range []struct {
		channel, beat string
		ok            bool
	}{
		{"ns:invalidations", "{ns:invalidations}:heartbeat:i", true},
		{"{ns}:invalidations", "{ns}:invalidations:heartbeat:i", true},
		{"a{b}c", "a{b}c:heartbeat:i", true},
		{"a{}b", "", false},
		{"a}b", "", false},
	} {
		if shardable(tc.channel) != tc.ok {
			t.Errorf("shardable(%q) = %v", tc.channel, !tc.ok)
		}
		if !tc.ok {
			continue
		}
		beat := derived(true, tc.channel, ":heartbeat:i")
		if beat != tc.beat || testenv.Slot(beat) != testenv.Slot(tc.channel) {
			t.Errorf("derived(%q) = %q, slot %d, channel's %d", tc.channel, beat, testenv.Slot(beat), testenv.Slot(tc.channel))
		}
		if got := derived(false, tc.channel, ":heartbeat:i"); got != tc.channel+":heartbeat:i" {
			t.Errorf("classic name changed: %q", got)
		}
	}
}

// TestCluster runs the bus on a real Redis Cluster (three primaries with a
// replica each), with the sharded transport chosen by default.
func TestCluster(t *testing.T) {
	rc := testenv.StartCluster(t)
	ctx := context.Background()

	t.Run("sharded transport", func(t *testing.T) {
		cl := newOnCluster(t, rc, 2, nil)
		a, b := cl.ins[0], cl.ins[1]
		if !a.bus.sharded || !b.bus.sharded {
			t.Fatal("a cluster client must default to the sharded transport")
		}
		slot := testenv.Slot(a.bus.channel)
		for _, n := range []string{a.bus.beat, a.bus.ackCh, a.bus.presence, a.bus.ackChannel("other")} {
			if testenv.Slot(n) != slot {
				t.Errorf("%s is in slot %d, the channel %s in %d", n, testenv.Slot(n), a.bus.channel, slot)
			}
		}
		owner, err := rc.Owner(ctx, slot)
		if err != nil {
			t.Fatal(err)
		}
		// Both subscriptions are shard subscriptions on the slot's primary,
		// and nobody uses classic pub/sub for the channel on any node.
		n, err := rc.Admin(owner).PubSubShardNumSub(ctx, a.bus.channel).Result()
		if err != nil || n[a.bus.channel] != 2 {
			t.Errorf("PUBSUB SHARDNUMSUB on %s: %v %v, want 2", owner, n, err)
		}
		for _, addr := range rc.Addrs() {
			if m, err := rc.Admin(addr).PubSubNumSub(ctx, a.bus.channel).Result(); err != nil || m[a.bus.channel] != 0 {
				t.Errorf("PUBSUB NUMSUB on %s: %v %v, want 0", addr, m, err)
			}
		}
		// The heartbeat's MULTI (HSET presence, SPUBLISH) runs in one slot.
		testenv.Eventually(t, 10*time.Second, func() bool {
			pres, err := a.c.Redis().HGetAll(ctx, a.bus.presence).Result()
			return err == nil && pres["i0"] != "" && pres["i1"] != ""
		}, "no presence entries from the heartbeats' MULTI")

		s := newStore()
		key := "user:1"
		s.bump(key)
		warm(t, cl, s, key)
		v := a.write(t, s, key)
		fresh(t, b, s, key, v, time.Now())
		if st := b.bus.Stats(); st.KeysApplied == 0 {
			t.Errorf("no event applied: %+v", st)
		}
		// Strict: the probe and its acknowledgement travel sharded too.
		v = a.write(t, s, key)
		acked := time.Now()
		if err := a.bus.WaitApplied(ctx); err != nil {
			t.Fatal(err)
		}
		if st := a.bus.Stats(); st.StrictAcked == 0 {
			t.Errorf("the strict wait was not acknowledged (timed out %d)", st.StrictTimeouts)
		}
		fresh(t, b, s, key, v, acked)

		// An epoch bump reaches the other instance.
		before := b.c.Stats().Epoch
		if err := a.c.RetireAll(ctx); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return b.c.Stats().Epoch > before }, "epoch bump not seen by i1")
	})

	// The cluster moves the channel's slot to another primary, or fails
	// its primary over: the node that served the subscription drops it
	// (SUNSUBSCRIBE) or breaks the connection; the bus must subscribe
	// again on the new owner, flush L1 before serving it again, and serve
	// nothing stale.
	for _, fault := range []string{"slot migration", "failover", "killed primary"} {
		t.Run(fault, func(t *testing.T) {
			cl := newOnCluster(t, rc, 2, nil)
			a, b := cl.ins[0], cl.ins[1]
			s := newStore()
			key := "user:" + fault
			s.bump(key)
			warm(t, cl, s, key)
			slot := testenv.Slot(b.bus.channel)
			subs, rec, flushes := b.bus.Stats().Subscribes, b.bus.Stats().Recoveries, b.c.Stats().Flushes
			var err error
			switch fault {
			case "slot migration":
				var owner, to string
				if owner, err = rc.Owner(ctx, slot); err == nil {
					if to, err = rc.OtherPrimary(ctx, owner); err == nil {
						_, err = rc.MigrateSlot(slot, to, 30*time.Second)
					}
				}
			case "failover":
				_, _, err = rc.Failover(slot, 30*time.Second)
			case "killed primary":
				_, _, err = rc.KillPrimary(slot, 60*time.Second)
			}
			if err != nil {
				t.Fatal(err)
			}
			v := a.write(t, s, key)
			acked := time.Now()
			fresh(t, b, s, key, v, acked)
			for _, in := range cl.ins {
				testenv.Eventually(t, 30*time.Second, func() bool {
					st := in.bus.Stats()
					return st.Subscribes > subs && st.Recoveries > rec && in.bus.Healthy()
				}, "%s: no resubscription and recovery after the %s: %+v", in.bus.InstanceID(), fault, in.bus.Stats())
			}
			if b.c.Stats().Flushes <= flushes {
				t.Errorf("L1 not flushed on the resubscription")
			}
			// Both subscriptions are on the slot's shard (its primary, or a
			// replica of it, which gets the SPUBLISHes over the cluster bus
			// once the primary knows it as its replica: the bus serves L1
			// only after a heartbeat published after the subscription came
			// back, TestClusterResubscribedOnDemotedPrimary).
			owner, _ := rc.Owner(ctx, slot)
			testenv.Eventually(t, 10*time.Second, func() bool {
				total := int64(0)
				for _, addr := range rc.Addrs() {
					if n, err := rc.Admin(addr).PubSubShardNumSub(ctx, b.bus.channel).Result(); err == nil {
						if n[b.bus.channel] > 0 && addr != owner {
							if r, err := rc.Replica(ctx, owner); err != nil || r != addr {
								t.Errorf("%d shard subscription(s) on %s, which does not serve slot %d", n[b.bus.channel], addr, slot)
							}
						}
						total += n[b.bus.channel]
					}
				}
				return total == 2
			}, "the two shard subscriptions are not on slot %d's shard", slot)
			// Events flow again: L1 serves, and a new write is seen in time.
			warm(t, cl, s, key)
			v = a.write(t, s, key)
			fresh(t, b, s, key, v, time.Now())
			b.bus.subs.mu.Lock()
			t.Logf("%s: i1 resubscribed %d time(s) by itself (sunsubscribe, MOVED or silence), %d subscriptions confirmed",
				fault, b.bus.subs.remade, b.bus.Stats().Subscribes)
			b.bus.subs.mu.Unlock()
		})
	}
}

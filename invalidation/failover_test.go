package invalidation

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/internal/testenv"
)

// knowsReplica reports whether the node at primary lists the node at
// replica as one of its replicas (CLUSTER NODES on primary).
func knowsReplica(t testing.TB, rc *testenv.Cluster, primary, replica string) bool {
	t.Helper()
	out, err := rc.Admin(primary).ClusterNodes(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLUSTER NODES on %s: %v", primary, err)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && f[0] == rc.Node(replica).ID {
			return strings.Contains(f[2], "slave") && f[3] == rc.Node(primary).ID
		}
	}
	return false
}

// waitInSync waits until the replica of primary has its replication link
// up (a replica just demoted refuses a manual failover until then).
func waitInSync(t testing.TB, rc *testenv.Cluster, primary string) {
	t.Helper()
	replica, err := rc.Replica(context.Background(), primary)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		info, err := rc.Admin(replica).Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, "%s never in sync with %s", replica, primary)
}

// resubscribed waits until in confirmed a subscription after the subs-th
// and has handled it: it re-read the epoch (its subscribedAt is set), and
// with GuardSubscribedBeat off turned healthy.
func resubscribed(in instance, subs uint64, timeout time.Duration) bool {
	handled := func() bool {
		in.bus.healthMu.Lock()
		defer in.bus.healthMu.Unlock()
		return in.bus.Stats().Subscribes > subs && time.Since(in.bus.subscribedAt) < timeout &&
			(in.bus.healthy.Load() || !failpoint.Disabled(failpoint.GuardSubscribedBeat))
	}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if handled() {
			return true
		}
	}
	return false
}

// subscribedOn returns the node with shard subscriptions to channel.
func subscribedOn(t testing.TB, rc *testenv.Cluster, channel string) string {
	t.Helper()
	for _, addr := range rc.Addrs() {
		if n, err := rc.Admin(addr).PubSubShardNumSub(context.Background(), channel).Result(); err == nil && n[channel] > 0 {
			return addr
		}
	}
	return ""
}

// TestClusterResubscribedOnDemotedPrimary: a CLUSTER FAILOVER of the bus
// channel's slot sends SUNSUBSCRIBE to the subscribers on the old primary,
// and the bus subscribes again at once — often on the same node, now a
// replica, while its client's slot map is stale (Redis accepts SSUBSCRIBE
// on a replica). A replica's shard subscribers get the SPUBLISHes of its
// primary over the cluster bus, and only once the primary has learnt, from
// the replica's gossip, that it is one of its replicas: events published on
// the new primary until then never reach the subscription, and heartbeats
// published after reach it. The bus must not serve L1 after a
// (re)subscription before a heartbeat published after it came back. The
// test writes right after the resubscription, while the new primary does
// not yet list the old one as its replica, and checks that the other
// instance sees the write within B; with the guard off it must not.
func TestClusterResubscribedOnDemotedPrimary(t *testing.T) {
	rc := testenv.StartCluster(t)
	t.Run("guarded", func(t *testing.T) {
		if stale, conclusive := demotedRun(t, rc, 2); stale {
			t.Fatal("read the old version beyond B after the write was acknowledged")
		} else if conclusive == 0 {
			t.Log("no write fell inside the window (a loaded machine): inconclusive")
		}
	})
	t.Run("guard off", func(t *testing.T) {
		defer failpoint.Disable(failpoint.GuardSubscribedBeat)()
		if stale, conclusive := demotedRun(t, rc, 8); !stale {
			t.Fatalf("no stale read with %s switched off (%d write(s) inside the window)", failpoint.GuardSubscribedBeat, conclusive)
		}
	})
}

// demotedRun fails the bus channel's slot over (at most 8 times) until
// want writes made right after a resubscription on the demoted primary
// fell inside the window, or a read beyond B returned the old version
// (stale).
func demotedRun(t *testing.T, rc *testenv.Cluster, want int) (stale bool, conclusive int) {
	ctx := context.Background()
	// A HealthWindow longer than the new primary takes to learn of its
	// replica: the lost heartbeats never turn the bus unhealthy by
	// themselves (with the default window that happens when the primary
	// learns within 150 ms, as it mostly does).
	cl := newOnCluster(t, rc, 2, func(_ *cache.Options, o *Options) { o.HealthWindow = time.Second })
	b := cl.ins[1]
	s := newStore()
	key := "user:demoted"
	s.bump(key)
	slot := testenv.Slot(b.bus.channel)
	for round := 0; round < 8 && conclusive < want && !stale; round++ {
		warm(t, cl, s, key)
		old, err := rc.Owner(ctx, slot)
		if err != nil {
			t.Fatal(err)
		}
		primary, err := rc.Replica(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		waitInSync(t, rc, old)
		// A primary votes for the failover of a given primary at most once
		// per two node timeouts.
		time.Sleep(2*testenv.ClusterNodeTimeout + 500*time.Millisecond)
		if on := subscribedOn(t, rc, b.bus.beat); on != old {
			// i1's subscription is on the replica (a stale map): promote
			// it, so that the failover measured demotes the node it is on.
			if _, _, err := rc.Failover(slot, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			continue
		}
		subs := b.bus.Stats().Subscribes
		errc := make(chan error, 1)
		go func() { _, _, err := rc.Failover(slot, 30*time.Second); errc <- err }()
		if !resubscribed(b, subs, 10*time.Second) {
			t.Logf("round %d: i1 did not resubscribe (subscription on %q): %+v", round, subscribedOn(t, rc, b.bus.beat), b.bus.Stats())
		} else {
			var window bool
			stale, window = demotedWrite(t, rc, cl, s, key, old, primary)
			if window {
				conclusive++
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	return stale, conclusive
}

// demotedWrite fills i1's L1 with key, writes it on i0 with its event sent
// to the new primary, and reads it on i1 until it sees the write; it
// reports whether a read beyond B returned the old version, and whether
// the write fell inside the window (i1's subscription on the old primary,
// which the new one did not list as its replica yet).
func demotedWrite(t *testing.T, rc *testenv.Cluster, cl *cluster, s *store, key, old, primary string) (stale, window bool) {
	ctx := context.Background()
	a, b := cl.ins[0], cl.ins[1]
	b.read(t, s, key) // L1 refilled after the resubscription's flush
	b.read(t, s, key)
	// The writer's event goes to the new primary, not to the old one
	// (where a stale map would send it, and it would reach the
	// subscriptions there directly).
	pub := a.c.Redis().(*redis.ClusterClient)
	pub.ReloadState(ctx)
	testenv.Eventually(t, 5*time.Second, func() bool {
		m, err := pub.MasterForKey(ctx, a.bus.channel)
		return err == nil && m.Options().Addr == primary
	}, "the writer's client never learnt the new primary")
	applied, hits := b.bus.Stats().KeysApplied, b.c.Stats().L1Hits
	v := a.write(t, s, key)
	acked := time.Now()
	n, _ := rc.Admin(old).PubSubShardNumSub(ctx, b.bus.beat).Result()
	window = !knowsReplica(t, rc, primary, old) && n[b.bus.beat] > 0
	bound := acked.Add(b.bus.opts.HealthWindow + clusterSlack)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		began := time.Now()
		got, err := cache.Get(ctx, b.c, key, s.load)
		if err == nil && got >= v {
			t.Logf("%s → %s: write inside the window: %v; seen by i1 after %v (event applied: %v, L1 hits since the write: %d, healthy: %v)",
				old, primary, window, began.Sub(acked).Round(time.Millisecond), b.bus.Stats().KeysApplied > applied, b.c.Stats().L1Hits-hits, b.bus.Healthy())
			return false, window
		}
		if err == nil && began.After(bound) {
			t.Logf("%s → %s: write inside the window: %v; i1 read v%d %v after v%d was acknowledged (bound %v)",
				old, primary, window, got, began.Sub(acked).Round(time.Millisecond), v, bound.Sub(acked))
			return true, window
		}
	}
	t.Fatalf("i1 never read v%d", v)
	return false, window
}

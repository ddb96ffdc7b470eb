package testenv

import (
	"context"
	"testing"
	"time"
)

// TestCluster starts a cluster and exercises every fault the handle
// injects: a coordinated failover, a slot migration with its keys, and a
// killed primary replaced by its replica.
func TestCluster(t *testing.T) {
	c := StartCluster(t)
	ctx := context.Background()
	rdb := c.NewClient(nil)
	prim, err := c.Primaries(ctx)
	if err != nil || len(prim) != 3 {
		t.Fatalf("primaries: %v %v", prim, err)
	}
	const key = "k{slot}"
	slot := Slot(key)
	if got, err := rdb.ClusterKeySlot(ctx, key).Result(); err != nil || int(got) != slot {
		t.Fatalf("Slot(%q) = %d, the server says %d (%v)", key, slot, got, err)
	}
	if err := rdb.Set(ctx, key, "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old, primary, err := c.Failover(slot, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover of slot %d: %s → %s", slot, old, primary)
	Eventually(t, 10*time.Second, func() bool { return rdb.Get(ctx, key).Val() == "v1" }, "key lost in the failover")

	to, err := c.OtherPrimary(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.MigrateSlot(slot, to, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if o, _ := c.Owner(ctx, slot); o != to {
		t.Fatalf("slot %d on %s after migrating it to %s", slot, o, to)
	}
	Eventually(t, 10*time.Second, func() bool { return rdb.Get(ctx, key).Val() == "v1" }, "key lost in the migration")

	old, primary, err = c.KillPrimary(slot, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s; %s promoted", old, primary)
	// The client learns of the promotion by reloading its slot map, which
	// go-redis rate-limits; on a loaded machine that took over 10 s, so
	// the test asks for reloads and gives it longer (it checks the key
	// survives, not how fast the client notices).
	Eventually(t, 30*time.Second, func() bool {
		rdb.ReloadState(ctx)
		return rdb.Get(ctx, key).Val() == "v1"
	}, "key lost with the killed primary")
}

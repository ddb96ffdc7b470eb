package testenv

import (
	"testing"
	"time"
)

// TestSentinelRestartKeepsRole: after a failover, the new primary (first
// started as a replica) is killed and restarted, as the rdb-restore and
// restart faults do. It comes back as the sentinels last configured it, and
// the group is ready again within 30 s; started with --replicaof of the
// first primary, it came back as a replica of its own replica, and the
// group could stay without a primary.
func TestSentinelRestartKeepsRole(t *testing.T) {
	g := StartSentinelGroup(t, 1)
	addr, err := g.KillLaggingPrimary(300*time.Millisecond, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReady(30 * time.Second); err != nil {
		t.Fatalf("not ready after the failover: %v", err)
	}
	s := g.Server(addr)
	s.Stop()
	s.Start()
	if err := g.WaitReady(30 * time.Second); err != nil {
		t.Fatalf("not ready after the restart: %v", err)
	}
}

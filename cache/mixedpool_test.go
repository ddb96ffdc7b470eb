package cache

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/internal/testenv"
)

// TestMixedPoolAfterPromotion: a Sentinel client's connections reach two
// primaries for a while after a failover: new connections are dialled to
// the promoted replica (the sentinels name it) while the older ones still
// reach the old primary, which takes writes until the sentinels demote it
// (and loses them in its full resynchronisation). Here the old connection
// is busy when the server is switched, so the client dials one to the
// promoted replica (the hook sees a new identity and withdraws the vouch);
// the write's invalidation dials another (its tombstone lands on the
// promoted replica), and the watcher's check, answered on the old
// connection by the old primary (the identity in use), vouches again: the
// read on that connection serves the old primary's v1 under the epoch in
// use, and the writer reads its overwritten row back. A check must vouch
// only when it reads the identity of the server behind the newest
// connection; until then Redis is not read.
func TestMixedPoolAfterPromotion(t *testing.T) {
	bothWays(t, []string{failpoint.GuardMixedServers}, mixedPoolAfterPromotion)
}

func mixedPoolAfterPromotion(t *testing.T) (stale bool) {
	oldP, newP := testenv.StartRedis(t, "--dir", t.TempDir(), "--repl-diskless-sync-delay", "0"),
		testenv.StartRedis(t, "--dir", t.TempDir(), "--repl-diskless-sync-delay", "0")
	ctx := context.Background()
	adminOld := redis.NewClient(&redis.Options{Addr: oldP.Addr()})
	adminNew := redis.NewClient(&redis.Options{Addr: newP.Addr()})
	t.Cleanup(func() { adminOld.Close(); adminNew.Close() })
	host, port, _ := net.SplitHostPort(oldP.Addr())
	if err := adminNew.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	rdb, to := switchingClient(t, oldP, func(o *redis.Options) {
		o.PoolSize, o.MaxIdleConns, o.PoolTimeout = 2, 1, 3*time.Second
	})
	c, err := New(ctx, Options{Redis: rdb, Namespace: "mixed", L1MaxBytes: -1, RedisTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second,
		EpochInterval: time.Minute, ServerCheckInterval: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := newSource()
	s.put("k", sampleRow(1, 1))
	mustGet(t, c, "k", s) // v1 on the old primary, replicated
	key := c.l2.key("k")
	if !testenv.WaitFor(5*time.Second, func() bool {
		n, err := adminNew.Exists(ctx, key).Result()
		return err == nil && n == 1
	}) {
		t.Fatal("the entry did not reach the replica")
	}
	if err := adminNew.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil { // promoted: a new replication id
		t.Fatal(err)
	}
	runID := func(cn *redis.Conn) string {
		info, err := cn.Info(ctx, "server").Result()
		if err != nil {
			t.Fatal(err)
		}
		return infoField(info, "run_id")
	}
	oldInfo, _ := adminOld.Info(ctx, "server").Result()
	newInfo, _ := adminNew.Info(ctx, "server").Result()
	oldID, newID := infoField(oldInfo, "run_id"), infoField(newInfo, "run_id")

	pinA := rdb.Conn() // an old connection, busy
	if runID(pinA) != oldID {
		t.Fatal("pinA is not on the old primary")
	}
	to(newP)
	pinB := rdb.Conn() // dialled to the promoted replica: the hook sees a new identity
	if runID(pinB) != newID {
		t.Fatal("pinB is not on the promoted replica")
	}
	pinA.Close() // the old connection, idle again

	s.put("k", sampleRow(1, 2))
	if err := c.Invalidate(ctx, "k", 2); err != nil {
		t.Fatal(err)
	}
	kinds := func() (o, n byte) {
		vo, _ := adminOld.Get(ctx, key).Bytes()
		vn, _ := adminNew.Get(ctx, key).Bytes()
		if len(vo) > 1 {
			o = vo[1]
		}
		if len(vn) > 1 {
			n = vn[1]
		}
		return o, n
	}
	o, n := kinds()
	t.Logf("after the write: entry kind %d on the old primary, %d on the new", o, n)
	// The watcher checks after the new connection; without the guard its
	// check, answered by the old primary, vouches.
	testenv.WaitFor(time.Second, c.serverVouched)
	got := mustGet(t, c, "k", s)
	pinB.Close()
	if !strings.Contains(adminOld.Info(ctx, "replication").Val(), "role:master") {
		t.Fatal("old primary is not a master")
	}
	t.Logf("read v%d after the acknowledged write of v2", got.Version)
	// The old primary's connections break (its demotion, or the client's
	// switch): once every connection reaches the promoted replica, the cache
	// adopts it and reads Redis again.
	if err := adminOld.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	if !testenv.WaitFor(10*time.Second, func() bool {
		_, err := Get(ctx, c, "probe", s.load)
		return isNotFound(err) && c.RedisHealthy() && c.srv.identity != "" && c.Stats().Incarnations > 0
	}) {
		t.Fatal("Redis not read again once every connection reached the promoted replica")
	}
	return got.Version != 2
}

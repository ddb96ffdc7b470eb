package cache

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/internal/testenv"
)

// TestReturnToEarlierServer: the client's connections move from server B to
// server A and back to B (a Sentinel client whose sentinel named the old
// primary for a while, both servers answering as primaries: split brain).
// The write made while on A left its tombstone on A only; B still holds the
// old value under the epoch B had. Back on B the identity is one the
// namespace already knows (its incarnation marker exists), but B's epoch is
// below one this cache has used since, so B's entries may lack what the
// cache wrote elsewhere: the cache must move B to a new epoch, not resume
// B's. Without that (guard off) the writer reads its old value back.
func TestReturnToEarlierServer(t *testing.T) {
	bothWays(t, []string{failpoint.GuardEpochRegress}, func(t *testing.T) bool {
		a, b := testenv.StartRedis(t), testenv.StartRedis(t)
		rdb, to := switchingClient(t, b, nil)
		c, err := New(context.Background(), Options{Redis: rdb, Namespace: "ret", L1MaxBytes: -1,
			EpochInterval: 50 * time.Millisecond, ServerCheckInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ctx := context.Background()
		s := newSource()
		s.put("k", sampleRow(1, 1))
		mustGet(t, c, "k", s) // v1 on B
		move := func(from, next *testenv.RedisServer) {
			before := c.Stats().Incarnations
			to(next)
			admin := redis.NewClient(&redis.Options{Addr: from.Addr()})
			defer admin.Close()
			if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(5*time.Second, func() bool {
				_, err := Get(ctx, c, "probe", s.load)
				return isNotFound(err) && c.RedisHealthy() && c.Stats().Incarnations > before
			})
		}
		move(b, a)
		s.put("k", sampleRow(1, 2))
		if err := c.Invalidate(ctx, "k", 2); err != nil { // the tombstone is on A only
			t.Fatal(err)
		}
		move(a, b)
		return mustGet(t, c, "k", s).Version != 2
	})
}
